"""VOC detection metrics on predicted boxes: per-class AP at IoU 0.5, mAP, and CorLoc.

Conventions (PASCAL VOC devkit, ``VOCevaldet.m``, except for the box convention):

- Boxes are continuous: COCO ``[x, y, w, h]`` -> ``[x, y, x + w, y + h]`` and
  ``IoU = |A n B| / |A u B|`` with areas ``w * h``. The devkit adds one pixel to widths and
  heights of its integer, inclusive boxes; jtsm's boxes have an exclusive right/bottom edge, so
  no ``+1`` is added.
- Detections of a class are taken by decreasing score (ties keep file order). A detection
  is a true positive when its best-overlapping gt box of the class in its image has
  ``IoU >= 0.5`` and was not taken by a higher-scoring detection; a false positive otherwise,
  except when that best box is ignored (VOC ``difficult``, COCO ``iscrowd``): then it counts as
  neither.
- AP: area under the precision envelope (VOC 2010+), or the 11-point average of the maximum
  precision at recall >= 0, 0.1, ..., 1 (VOC 2007, ``voc07=True``). Classes without a
  non-ignored gt box have no AP and are left out of the mean.
- CorLoc of a class: among the images with a non-ignored gt box of the class, the share whose
  top-scoring detection of that class overlaps some gt box of the class (ignored ones included)
  with IoU >= 0.5. CorLoc is the mean over those classes.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from jtsm.evaluation.cocogt import load_instances_gt, load_results

__all__ = [
    "GtBoxes",
    "box_iou",
    "class_ap",
    "corloc",
    "evaluate_corloc",
    "evaluate_map",
    "voc_ap",
]

IOU_THRESHOLD = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of continuous XYXY boxes ``a (N, 4)`` and ``b (M, 4)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def voc_ap(recall: np.ndarray, precision: np.ndarray, voc07: bool = False) -> float:
    """AP from the recall / precision of the ranked detections (see module docstring)."""
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if voc07:
        ap = 0.0
        for k in range(11):
            above = precision[recall >= k / 10]
            ap += (above.max() if above.size else 0.0) / 11
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


@dataclass
class GtBoxes:
    """Gt boxes of one class in one image: ``boxes (N, 4)`` XYXY and ``ignore (N,)`` bool."""

    boxes: np.ndarray
    ignore: np.ndarray


def class_ap(
    gt: dict[Any, GtBoxes],
    image_ids: np.ndarray,
    scores: np.ndarray,
    boxes: np.ndarray,
    voc07: bool = False,
) -> float | None:
    """VOC AP of one class; ``gt`` maps image id -> its boxes of the class.

    ``image_ids``, ``scores``, ``boxes`` (XYXY) describe the class's detections. ``None`` when
    the class has no non-ignored gt box.
    """
    npos = sum(int((~g.ignore).sum()) for g in gt.values())
    if npos == 0:
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    taken = {k: np.zeros(len(g.ignore), bool) for k, g in gt.items()}
    for rank, d in enumerate(order):
        g = gt.get(image_ids[d])
        if g is None or len(g.boxes) == 0:
            fp[rank] = 1
            continue
        iou = box_iou(boxes[d], g.boxes)[0]
        j = int(np.argmax(iou))
        if iou[j] < IOU_THRESHOLD:
            fp[rank] = 1
        elif g.ignore[j]:
            continue  # on an ignored box: neither true nor false
        elif not taken[image_ids[d]][j]:
            tp[rank] = 1
            taken[image_ids[d]][j] = True
        else:
            fp[rank] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / npos
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision, voc07)


def corloc(
    gt: dict[Any, GtBoxes], image_ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray
) -> float | None:
    """CorLoc of one class (see module docstring); ``None`` without a positive image."""
    positives = [k for k, g in gt.items() if (~g.ignore).any()]
    if not positives:
        return None
    best: dict[Any, int] = {}
    for d in range(len(scores)):  # first of equal scores wins (file order)
        k = image_ids[d]
        if k not in best or scores[d] > scores[best[k]]:
            best[k] = d
    hits = 0
    for k in positives:
        d = best.get(k)
        if d is not None and (box_iou(boxes[d], gt[k].boxes)[0] >= IOU_THRESHOLD).any():
            hits += 1
    return hits / len(positives)


def _load(
    gt_json: str | os.PathLike[str],
    det_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None,
) -> tuple[list[dict[str, Any]], dict[int, dict[Any, GtBoxes]], dict[int, tuple]]:
    """Categories, per-class gt boxes by image, per-class detections (ids, scores, XYXY)."""
    gt = load_instances_gt(gt_json, gt_dir, masks=False)
    dets = load_results(det_json, gt, need="bbox")
    raw: dict[int, dict[Any, list[tuple[list[float], bool]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for a in gt["annotations"]:
        raw[a["category_id"]][a["image_id"]].append((_xyxy(a["bbox"]), bool(a["iscrowd"])))
    gt_boxes = {
        c: {
            k: GtBoxes(np.array([b for b, _ in v], np.float64).reshape(-1, 4),
                       np.array([i for _, i in v], bool))
            for k, v in per_image.items()
        }
        for c, per_image in raw.items()
    }
    by_class: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in dets:
        by_class[r["category_id"]].append(r)
    det_arrays = {
        c: (
            np.array([r["image_id"] for r in rs], dtype=object),
            np.array([float(r["score"]) for r in rs], np.float64),
            np.array([_xyxy(r["bbox"]) for r in rs], np.float64).reshape(-1, 4),
        )
        for c, rs in by_class.items()
    }
    return gt["categories"], gt_boxes, det_arrays


def _xyxy(b: list[float]) -> list[float]:
    x, y, w, h = (float(v) for v in b)
    return [x, y, x + w, y + h]


_EMPTY = (np.zeros(0, dtype=object), np.zeros(0), np.zeros((0, 4)))


def evaluate_map(
    gt_json: str | os.PathLike[str],
    det_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None = None,
    voc07: bool = False,
) -> dict[str, Any]:
    """VOC detection AP at IoU 0.5 per class and their mean.

    Arguments:
        gt_json: COCO instances json or COCO panoptic json (thing segments' boxes).
        det_json: COCO results json (``image_id``, ``category_id``, ``bbox`` XYWH, ``score``).
        voc07: 11-point AP (VOC 2007) instead of the area under the precision envelope.

    Returns:
        ``{"map": float, "per_class": {name: AP}}`` over classes with a non-ignored gt box.
    """
    cats, gt, dets = _load(gt_json, det_json, gt_dir)
    per_class = {}
    for c in cats:
        ap = class_ap(gt.get(c["id"], {}), *dets.get(c["id"], _EMPTY), voc07=voc07)
        if ap is not None:
            per_class[str(c["name"])] = ap
    return {"map": _mean(per_class), "per_class": per_class}


def evaluate_corloc(
    gt_json: str | os.PathLike[str],
    det_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """CorLoc per class and its mean: ``{"corloc": float, "per_class": {name: value}}``."""
    cats, gt, dets = _load(gt_json, det_json, gt_dir)
    per_class = {}
    for c in cats:
        v = corloc(gt.get(c["id"], {}), *dets.get(c["id"], _EMPTY))
        if v is not None:
            per_class[str(c["name"])] = v
    return {"corloc": _mean(per_class), "per_class": per_class}


def _mean(values: dict[str, float]) -> float:
    return float(sum(values.values()) / len(values)) if values else 0.0
