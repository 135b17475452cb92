"""Proposal recall / ABO: a hand-made case with known answers, and a dense cross-check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jtsm.data.coco_panoptic import write_panoptic_png
from jtsm.errors import DataError
from jtsm.evaluation.recall import best_overlaps, evaluate_recall
from jtsm.proposals.store import ProposalStore
from jtsm.structures import ProposalSet


def _hand_made(tmp_path):
    """4x6 image: thing id 1 = columns 0-1, stuff id 2 = columns 2-4 (minus one void pixel),
    crowd thing id 3 = column 5."""
    ids = np.zeros((4, 6), np.int64)
    ids[:, 0:2] = 1
    ids[:, 2:5] = 2
    ids[:, 5] = 3
    ids[0, 2] = 0
    ann_dir = tmp_path / "annotations"
    write_panoptic_png(ann_dir / "panoptic_val" / "img1.png", ids)
    gt = {
        "images": [{"id": 7, "file_name": "img1.jpg", "height": 4, "width": 6}],
        "annotations": [{"image_id": 7, "file_name": "img1.png", "segments_info": [
            {"id": 1, "category_id": 1, "iscrowd": 0},
            {"id": 2, "category_id": 2, "iscrowd": 0},
            {"id": 3, "category_id": 1, "iscrowd": 1}]}],
        "categories": [{"id": 1, "name": "thing", "isthing": 1},
                       {"id": 2, "name": "stuff", "isthing": 0}],
    }
    (ann_dir / "panoptic_val.json").write_text(json.dumps(gt))
    masks = np.zeros((3, 4, 6), bool)
    masks[0][:, 0:3] = True  # IoU 8/12 with the thing, 3/20 with the stuff
    masks[1][:, 2:6] = True  # IoU 11/16 with the stuff
    masks[2][:, 0:2] = True  # the thing exactly
    ProposalStore(tmp_path / "props").save("img1.jpg",
                                           ProposalSet.from_masks(masks, [0.9, 0.5, 0.1]))
    return ann_dir / "panoptic_val.json", tmp_path / "props"


def _group(r50, r70, abo, n):
    return {"recall@0.5": r50, "recall@0.7": r70, "abo": pytest.approx(abo), "n": n}


def test_hand_made_case(tmp_path):
    gt, props = _hand_made(tmp_path)
    res = evaluate_recall(gt, props, ks=(1, 2, None))
    assert set(res) == {"all", "things", "stuff", "by_k"}
    assert res["all"] == _group(1.0, 0.5, (1 + 11 / 16) / 2, 2)
    assert res["things"] == _group(1.0, 1.0, 1.0, 1)  # the crowd segment does not count
    assert res["stuff"] == _group(1.0, 0.0, 11 / 16, 1)
    assert set(res["by_k"]) == {1, 2, "all"}
    assert res["by_k"][1]["all"] == _group(0.5, 0.0, (8 / 12 + 3 / 20) / 2, 2)
    assert res["by_k"][2]["things"] == _group(1.0, 0.0, 8 / 12, 1)
    assert res["by_k"][2]["stuff"] == _group(1.0, 0.0, 11 / 16, 1)
    assert res["by_k"]["all"] == {k: res[k] for k in ("all", "things", "stuff")}
    json.dumps(res)  # serialisable as is


def test_missing_or_mismatched_proposals_are_named(tmp_path):
    gt, props = _hand_made(tmp_path)
    (props / "img1.jpg.npz").unlink()
    with pytest.raises(DataError, match="img1.jpg.npz"):
        evaluate_recall(gt, props)
    ProposalStore(props).save("img1.jpg", ProposalSet.from_masks(np.ones((1, 5, 6), bool)))
    with pytest.raises(DataError, match="6x5 image, but the image is 6x4"):
        evaluate_recall(gt, props)


def test_best_overlaps_matches_dense_iou():
    rng = np.random.default_rng(0)
    h, w = 20, 25
    gt = rng.integers(0, 6, (h, w))
    masks = rng.random((30, h, w)) < rng.random((30, 1, 1))
    masks[3] = gt == 2
    ps = ProposalSet.from_masks(masks, rng.random(30))
    seg_ids = [1, 2, 3, 5]
    got = best_overlaps(ps, gt, seg_ids, [5, None])
    order = np.argsort(-ps.scores, kind="stable")
    dense = ps.masks(order)
    for j, s in enumerate(seg_ids):
        g = gt == s
        iou = (dense & g).sum((1, 2)) / (dense | g).sum((1, 2))
        assert got[1, j] == pytest.approx(iou.max())
        assert got[0, j] == pytest.approx(iou[:5].max())
    assert got[1, 1] == pytest.approx(1.0)
    empty = ProposalSet(np.zeros((h, w), np.int32), np.zeros((0, 1), bool))
    assert best_overlaps(empty, gt, seg_ids, [None]).tolist() == [[0, 0, 0, 0]]
