"""PQ: equal to panopticapi's pq_compute on random data; hand-made cases for each rule."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from jtsm.data.coco_panoptic import read_panoptic_png
from jtsm.evaluation.idmaps import FIRST, IdIndexer, joint_histogram
from jtsm.evaluation.panoptic import PanopticEvaluator, evaluate_pq, pq_from_pairs
from jtsm.evaluation.synthetic import make_categories, write_pair_dataset
from jtsm.structures import PanopticSeg

GROUPS = ("All", "Things", "Stuff")


def _reference(gt: Path, pred: Path) -> dict:
    from panopticapi.evaluation import pq_compute

    with contextlib.redirect_stdout(io.StringIO()):
        return pq_compute(str(gt), str(pred))


def _assert_same(ours: dict, ref: dict, cats: list[dict]) -> None:
    for g in GROUPS:
        assert ours[g]["n"] == ref[g]["n"], g
        for m in ("pq", "sq", "rq"):
            assert abs(ours[g][m] - ref[g][m]) <= 1e-9, (g, m, ours[g][m], ref[g][m])
    names = {c["id"]: c["name"] for c in cats}
    for cid, r in ref["per_class"].items():
        mine = ours["per_class"].get(names[cid])
        if mine is None:  # not occurring: panopticapi reports zeros and does not average it
            assert r == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
            continue
        for m in ("pq", "sq", "rq"):
            assert abs(mine[m] - r[m]) <= 1e-9, (cid, m)
    assert len(ours["per_class"]) == ours["All"]["n"]


@pytest.mark.parametrize("seed,workers", [(0, 1), (1, 1), (2, 2), (3, 1), (4, 1)])
def test_equals_panopticapi(tmp_path: Path, seed: int, workers: int) -> None:
    gt, pred = write_pair_dataset(tmp_path, 10, 40, 60, seed=seed, num_segments=8)
    d = json.loads(gt.read_text())
    segs = [s for a in d["annotations"] for s in a["segments_info"]]
    assert any(s["iscrowd"] for s in segs)  # the data exercises crowd handling
    ours = evaluate_pq(gt, pred, workers=workers)
    _assert_same(ours, _reference(gt, pred), d["categories"])
    if workers > 1:  # chunk sums are added in a fixed order: the same to the last bit
        assert evaluate_pq(gt, pred, workers=1) == ours


def test_in_memory_equals_files(tmp_path: Path) -> None:
    gt, pred = write_pair_dataset(tmp_path, 6, 40, 60, seed=7)
    g, p = json.loads(gt.read_text()), json.loads(pred.read_text())
    pairs = [
        (PanopticSeg(read_panoptic_png(tmp_path / "gt" / a["file_name"]), a["segments_info"]),
         PanopticSeg(read_panoptic_png(tmp_path / "pred" / b["file_name"]), b["segments_info"]))
        for a, b in zip(g["annotations"], p["annotations"])
    ]
    assert pq_from_pairs(pairs, g["categories"]) == evaluate_pq(gt, pred, workers=1)
    ev = PanopticEvaluator(g["categories"])
    ev.process(*pairs[0])
    ev.reset()
    for pair in pairs:
        ev.process(*pair)
    assert ev.evaluate() == evaluate_pq(gt, pred, workers=1)


def _seg(ids: np.ndarray, spec: dict[int, tuple[int, int]]) -> PanopticSeg:
    """``spec``: segment id -> (category id, iscrowd)."""
    return PanopticSeg(ids, [{"id": k, "category_id": c, "iscrowd": z}
                             for k, (c, z) in spec.items()])


CATS = [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "car", "isthing": 1},
        {"id": 9, "name": "sky", "isthing": 0}]


def test_hand_made_match_and_void() -> None:
    gt = np.zeros((4, 10), np.int64)
    gt[:, :5] = 1  # person, 20 px
    gt[:, 5:] = 2  # sky, 20 px
    pred = np.zeros_like(gt)
    pred[:3, :4] = 7  # person, 12 px inside gt 1
    pred[:3, 4:] = 8  # sky, 18 px; 3 of them on gt 1 (another class)
    r = pq_from_pairs([(_seg(gt, {1: (1, 0), 2: (9, 0)}), _seg(pred, {7: (1, 0), 8: (9, 0)}))],
                      CATS)
    # person: IoU 12 / 20
    assert r["per_class"]["person"] == pytest.approx({"pq": 0.6, "sq": 0.6, "rq": 1.0})
    # sky: inter 15, union 18 + 20 - 15 = 23
    assert r["per_class"]["sky"] == pytest.approx({"pq": 15 / 23, "sq": 15 / 23, "rq": 1.0})
    assert r["Things"]["n"] == 1 and r["Stuff"]["n"] == 1
    assert "car" not in r["per_class"]


def test_hand_made_void_and_crowd_ignore() -> None:
    gt = np.zeros((4, 10), np.int64)
    gt[:, 6:] = 3  # crowd car, 16 px; cols 0-5 are void
    pred = np.zeros_like(gt)
    pred[:, :2] = 5  # person on void only: ignored
    pred[:, 4:8] = 6  # car: 8 px on void (cols 4-5) + 8 on the crowd: ignored
    pred[:, 8:] = 7  # person on the crowd car (other class): a false positive
    r = pq_from_pairs(
        [(_seg(gt, {3: (2, 1)}), _seg(pred, {5: (1, 0), 6: (2, 0), 7: (1, 0)}))], CATS
    )
    assert r["per_class"] == {"person": {"pq": 0.0, "sq": 0.0, "rq": 0.0}}
    assert r["All"]["n"] == 1 and r["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}


def test_iou_threshold_and_void_in_union() -> None:
    gt = np.zeros((2, 4), np.int64)
    gt[:, :2] = 1  # 4 px
    gt[:, 2:] = 3  # sky
    pred = np.zeros_like(gt)
    pred[:, :3] = 2  # 6 px, 4 shared: IoU 4/6
    r = pq_from_pairs([(_seg(gt, {1: (1, 0), 3: (9, 0)}), _seg(pred, {2: (1, 0)}))], CATS)
    assert r["per_class"]["person"] == pytest.approx({"pq": 2 / 3, "sq": 2 / 3, "rq": 1.0})
    pred3 = np.array([[2, 2, 2, 2]], np.int64)
    gt3 = np.array([[1, 1, 0, 0]], np.int64)
    r3 = pq_from_pairs([(_seg(gt3, {1: (1, 0)}), _seg(pred3, {2: (1, 0)}))], CATS)
    # union = 4 + 2 - 2 - 2 (pred on void) = 2 -> IoU 1: void is left out of the union
    assert r3["per_class"]["person"]["sq"] == 1.0
    gt4 = np.array([[1, 1, 3, 3]], np.int64)
    r4 = pq_from_pairs([(_seg(gt4, {1: (1, 0), 3: (9, 0)}), _seg(pred3, {2: (1, 0)}))], CATS)
    # inter 2, union 4 + 2 - 2 = 4 -> IoU exactly 0.5: no match (strictly greater needed)
    assert r4["per_class"]["person"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}


def test_histogram_paths_agree() -> None:
    rng = np.random.default_rng(0)
    gt_seg = rng.choice(np.arange(1, 1 << 24), 300, replace=False)
    pred_seg = rng.choice(np.arange(1, 1 << 24), 250, replace=False)
    gt = rng.choice(np.concatenate([[0], gt_seg]), (50, 70)).astype(np.uint32)
    pred = rng.choice(np.concatenate([[0], pred_seg]), (50, 70)).astype(np.uint32)
    ix = IdIndexer()
    wide = ix.histogram(gt, gt_seg, pred, pred_seg)  # 302 * 252 > 2^16: bincount path
    ref = joint_histogram(ix._index_wide(gt, gt_seg), ix._index_wide(pred, pred_seg),
                          len(gt_seg) + FIRST, len(pred_seg) + FIRST)
    assert (wide == ref).all() and wide.sum() == gt.size
    few_g, few_p = gt_seg[:20], pred_seg[:30]
    g2 = np.where(np.isin(gt, few_g) | (gt == 0), gt, few_g[0]).astype(np.uint32)
    p2 = np.where(np.isin(pred, few_p) | (pred == 0), pred, few_p[0]).astype(np.uint32)
    fast = ix.histogram(g2, few_g, p2, few_p)
    ref2 = joint_histogram(ix._index_wide(g2, few_g), ix._index_wide(p2, few_p), 22, 32)
    assert (fast == ref2).all()
    assert fast[FIRST:, FIRST:].sum() > 0


def test_categories_order_and_names() -> None:
    cats = make_categories(2, 1)
    ids = np.ones((3, 3), np.int64)
    r = pq_from_pairs([(_seg(ids, {1: (100, 0)}), _seg(ids, {1: (100, 0)}))], cats)
    assert r["per_class"] == {"stuff0": {"pq": 1.0, "sq": 1.0, "rq": 1.0}}
    assert r["Things"]["n"] == 0 and r["Stuff"]["n"] == 1


def test_only_the_last_crowd_segment_of_a_class_counts() -> None:
    # panopticapi keeps one crowd region per class: the last one listed in segments_info.
    gt = np.array([[3, 3, 3, 3, 4, 4, 4, 4]], np.int64)
    pred = np.array([[5, 5, 5, 5, 0, 0, 0, 0]], np.int64)
    on_first = pq_from_pairs([(_seg(gt, {3: (1, 1), 4: (1, 1)}), _seg(pred, {5: (1, 0)}))], CATS)
    assert on_first["per_class"] == {"person": {"pq": 0.0, "sq": 0.0, "rq": 0.0}}  # an FP
    on_last = pq_from_pairs([(_seg(gt, {4: (1, 1), 3: (1, 1)}), _seg(pred, {5: (1, 0)}))], CATS)
    assert on_last["per_class"] == {} and on_last["All"]["n"] == 0  # ignored


def test_gt_area_from_png_when_json_has_none(tmp_path: Path) -> None:
    gt, pred = write_pair_dataset(tmp_path, 5, 40, 60, seed=11)
    want = evaluate_pq(gt, pred, workers=1)
    d = json.loads(gt.read_text())
    for a in d["annotations"]:
        for s in a["segments_info"]:
            del s["area"]
    gt.write_text(json.dumps(d))
    assert evaluate_pq(gt, pred, workers=1) == want


def test_image_ids_score_only_those_images(tmp_path: Path) -> None:
    gt, pred = write_pair_dataset(tmp_path, 8, 40, 60, seed=5, num_segments=6)
    d = json.loads(gt.read_text())
    keep = {im["id"] for im in d["images"][::3]}
    sub = tmp_path / "gt_sub.json"  # the same ground truth, restricted by hand
    sub.write_text(json.dumps({**d, "images": [im for im in d["images"] if im["id"] in keep],
                               "annotations": [a for a in d["annotations"]
                                               if a["image_id"] in keep]}))
    restricted = evaluate_pq(gt, pred, image_ids=keep, workers=1)
    p = json.loads(pred.read_text())
    pred_sub = tmp_path / "pred_sub.json"  # predictions for images the truth lacks are refused
    pred_sub.write_text(json.dumps({**p, "annotations": [a for a in p["annotations"]
                                                         if a["image_id"] in keep]}))
    assert restricted == evaluate_pq(sub, pred_sub, gt_dir=tmp_path / gt.stem,
                                     pred_dir=tmp_path / pred.stem, workers=1)
    assert restricted != evaluate_pq(gt, pred, workers=1)
