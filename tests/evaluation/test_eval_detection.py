"""VOC mAP and CorLoc against a case computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jtsm.evaluation.detection import box_iou, evaluate_corloc, evaluate_map, voc_ap

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]


def _write_case(tmp_path: Path, ignore_key: str) -> tuple[Path, Path]:
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 100, "width": 100} for i in (1, 2, 3, 4)]
    boxes = [  # image, category, XYWH, ignored
        (1, 1, [0, 0, 10, 10], 0),  # A
        (1, 1, [20, 20, 10, 10], 0),  # B
        (2, 1, [0, 0, 10, 10], 0),  # C
        (2, 1, [50, 50, 10, 10], 1),  # D: crowd / difficult
        (4, 1, [0, 0, 10, 10], 0),  # E
        (3, 2, [0, 0, 4, 4], 0),  # the only dog; no dog is detected
    ]
    anns = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, ignore_key: z}
            for k, (i, c, b, z) in enumerate(boxes)]
    gt = tmp_path / "instances.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))
    dets = [  # image, category, XYWH, score
        (4, 1, [30, 30, 5, 5], 0.95),  # FP (misses E)
        (1, 1, [0, 0, 10, 10], 0.9),  # TP on A
        (1, 1, [1, 0, 10, 10], 0.8),  # FP: A already taken (IoU 90/110)
        (2, 1, [50, 50, 10, 10], 0.7),  # on the ignored D: neither
        (3, 1, [0, 0, 5, 5], 0.6),  # FP: no cat in image 3
        (2, 1, [0, 0, 10, 20], 0.5),  # TP on C, IoU exactly 0.5
        (1, 1, [20, 20, 10, 10], 0.4),  # TP on B
        (1, 3, [0, 0, 10, 10], 0.3),  # bird: no gt bird, the class is left out
    ]
    det = tmp_path / "detections.json"
    det.write_text(json.dumps([{"image_id": i, "category_id": c, "bbox": b, "score": s}
                               for i, c, b, s in dets]))
    return gt, det


@pytest.mark.parametrize("ignore_key", ["iscrowd", "difficult"])
def test_map_by_hand(tmp_path: Path, ignore_key: str) -> None:
    gt, det = _write_case(tmp_path, ignore_key)
    # cat, npos 4: ranks FP TP FP - FP TP TP -> recall .25 .25 .25 .25 .5 .75 (after rank 0: 0)
    # precision 0 .5 1/3 1/3 .25 .4 .5; its envelope is .5 up to recall .75, then 0.
    r = evaluate_map(gt, det)
    assert r["per_class"] == pytest.approx({"cat": 0.375, "dog": 0.0})
    assert r["map"] == pytest.approx(0.1875)
    # 11-point: recall thresholds 0 .. .7 see max precision .5, .8 .. 1 see none.
    r07 = evaluate_map(gt, det, voc07=True)
    assert r07["per_class"]["cat"] == pytest.approx(8 * 0.5 / 11)
    assert r07["map"] == pytest.approx(4 * 0.5 / 11)


@pytest.mark.parametrize("ignore_key", ["iscrowd", "difficult"])
def test_corloc_by_hand(tmp_path: Path, ignore_key: str) -> None:
    gt, det = _write_case(tmp_path, ignore_key)
    # cat: images 1, 2, 4 are positive; the top box hits in 1 (A) and 2 (on D), misses in 4.
    r = evaluate_corloc(gt, det)
    assert r["per_class"] == pytest.approx({"cat": 2 / 3, "dog": 0.0})
    assert r["corloc"] == pytest.approx(1 / 3)


def test_box_iou_is_continuous() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [10, 10, 20, 20], [0, 0, 10, 10]], float)
    assert box_iou(a, b)[0] == pytest.approx([50 / 150, 0.0, 1.0])  # VOC's +1 would give .375


def test_voc_ap_edges() -> None:
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert voc_ap(np.array([0.3]), np.array([1.0]), voc07=True) == pytest.approx(4 / 11)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_panoptic_gt_boxes(tmp_path: Path) -> None:
    from jtsm.evaluation.synthetic import write_pair_dataset

    gt, _ = write_pair_dataset(tmp_path, 3, 32, 48, seed=1, num_segments=5)
    d = json.loads(gt.read_text())
    things = {c["id"] for c in d["categories"] if c["isthing"]}
    dets = [{"image_id": a["image_id"], "category_id": s["category_id"], "bbox": s["bbox"],
             "score": 1.0} for a in d["annotations"] for s in a["segments_info"]
            if s["category_id"] in things]
    # every thing box found once (crowd ones are ignored, not false positives); stuff is
    # dropped from the detections without error
    dets.append({"image_id": 1, "category_id": 100, "bbox": [0, 0, 5, 5], "score": 1.0})
    p = tmp_path / "dets.json"
    p.write_text(json.dumps(dets))
    r = evaluate_map(gt, p)
    assert r["map"] == 1.0 and set(r["per_class"]) <= {f"thing{i}" for i in range(6)}
