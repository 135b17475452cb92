"""COCO AP: equal to pycocotools' COCOeval called directly, on instances and panoptic gt."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jtsm.data.coco_panoptic import read_panoptic_png
from jtsm.evaluation.instances import evaluate_ap
from jtsm.evaluation.synthetic import write_pair_dataset


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _instances(pan_json: Path, png_dir: Path, with_scores: bool, rng=None) -> tuple[dict, list]:
    """Thing segments of a panoptic json as COCO instances (gt) or results (with scores)."""
    d = json.loads(pan_json.read_text())
    things = {c["id"] for c in d["categories"] if c["isthing"]}
    anns = []
    for a in d["annotations"]:
        ids = read_panoptic_png(png_dir / a["file_name"])
        for s in a["segments_info"]:
            if s["category_id"] not in things:
                continue
            rle = _rle(ids == s["id"])
            rec = {"image_id": a["image_id"], "category_id": s["category_id"],
                   "segmentation": rle, "bbox": mask_utils.toBbox(rle).tolist()}
            if with_scores:
                rec["score"] = float(rng.random())
            else:
                rec.update(id=len(anns) + 1, iscrowd=s["iscrowd"],
                           area=float(mask_utils.area(rle)))
            anns.append(rec)
    cats = [c for c in d["categories"] if c["isthing"]]
    return {"images": d["images"], "annotations": anns, "categories": cats}, anns


def _direct(gt_file: Path, results: list, iou_type: str) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:6]]


def _as_list(r: dict) -> list[float]:
    return [-1.0 if r[k] is None else r[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools(tmp_path: Path, seed: int) -> None:
    gt_pan, pred_pan = write_pair_dataset(tmp_path, 8, 64, 96, seed=seed, num_segments=8)
    rng = np.random.default_rng(seed)
    gt_inst, _ = _instances(gt_pan, tmp_path / "gt", with_scores=False)
    _, results = _instances(pred_pan, tmp_path / "pred", with_scores=True, rng=rng)
    assert any(a["iscrowd"] for a in gt_inst["annotations"])
    gt_file = tmp_path / "instances.json"
    gt_file.write_text(json.dumps(gt_inst))
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(results))

    segm_only = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    box_only = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    want_segm = _direct(gt_file, json.loads(json.dumps(segm_only)), "segm")
    want_bbox = _direct(gt_file, json.loads(json.dumps(box_only)), "bbox")
    assert 0 < want_segm[0] < 1

    for gt in (gt_file, gt_pan):  # instances json, and the panoptic json converted
        got = evaluate_ap(gt, res_file)
        assert set(got) == {"segm", "bbox"}
        assert _as_list(got["segm"]) == pytest.approx(want_segm, abs=1e-12)
        assert _as_list(got["bbox"]) == pytest.approx(want_bbox, abs=1e-12)


def test_no_results_gives_zero(tmp_path: Path) -> None:
    gt_pan, _ = write_pair_dataset(tmp_path, 2, 32, 32, seed=3, num_segments=4)
    res = tmp_path / "empty.json"
    res.write_text("[]")
    got = evaluate_ap(gt_pan, res)
    assert got["bbox"]["AP"] == 0.0
