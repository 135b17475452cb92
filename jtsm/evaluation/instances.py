"""COCO mask AP and box AP through pycocotools' ``COCOeval``.

The ground truth is a COCO instances json or a COCO panoptic json (converted by
:func:`jtsm.evaluation.cocogt.load_instances_gt`). Results are a COCO results json. As in
detectron2, a record's ``bbox`` is dropped for the mask evaluation, so that pycocotools takes a
detection's area from its mask (its area decides the small / medium / large ranges); for the box
evaluation a record without ``bbox`` gets the tight box of its mask.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from typing import Any

from jtsm.evaluation.cocogt import load_instances_gt, load_results
from jtsm.optional_deps import require

__all__ = ["AP_KEYS", "coco_ap", "evaluate_ap"]

#: The first six entries of ``COCOeval.stats``, in order.
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _quiet() -> contextlib.AbstractContextManager[Any]:
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints progress on stdout


def _pycocotools(name: str) -> Any:
    """``pycocotools.<name>``, or the one-line error that mask/box AP needs pycocotools."""
    return require(f"pycocotools.{name}", "pycocotools", "COCO AP (COCOeval)")


def _coco(dataset: dict[str, Any]) -> Any:
    coco = _pycocotools("coco").COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def coco_ap(
    gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str
) -> dict[str, float | None]:
    """``{AP, AP50, AP75, APs, APm, APl}`` of ``results`` on ``gt`` (``iou_type``: segm|bbox).

    Values are fractions; ``None`` where pycocotools reports -1 (no ground truth in that range).
    """
    coco_gt = _coco(gt)
    with _quiet():
        if results:
            coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        else:
            coco_dt = _coco({"images": gt["images"], "categories": gt["categories"],
                             "annotations": []})
        ev = _pycocotools("cocoeval").COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (float(v) if v >= 0 else None) for k, v in zip(AP_KEYS, ev.stats[:6])}


def evaluate_ap(
    gt_json: str | os.PathLike[str],
    results_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None = None,
) -> dict[str, dict[str, float | None]]:
    """Mask and box AP of a COCO results json.

    Arguments:
        gt_json: COCO instances json, or COCO panoptic json (PNG folder ``gt_dir`` or beside it).
        results_json: a list of ``{image_id, category_id, score, segmentation (RLE) and/or bbox
            (XYWH)}``.

    Returns:
        ``{"segm": {AP, AP50, AP75, APs, APm, APl}, "bbox": {...}}``; ``segm`` only when every
        result and every ground-truth instance has a mask.

    Raises:
        MissingDependencyError: pycocotools is not installed (checked before reading files).
    """
    mask_utils = _pycocotools("mask")
    probe = load_instances_gt(gt_json, gt_dir, masks=False)
    results = load_results(results_json, probe, need="any")
    with_masks = bool(results) and all("segmentation" in r for r in results)
    gt = load_instances_gt(gt_json, gt_dir, masks=True) if with_masks else probe
    gt_has_masks = all("segmentation" in a for a in gt["annotations"])
    out: dict[str, dict[str, float | None]] = {}
    if with_masks and gt_has_masks:
        segm = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        out["segm"] = coco_ap(gt, segm, "segm")
    boxes = []
    for r in results:
        box = r["bbox"] if "bbox" in r else mask_utils.toBbox(r["segmentation"]).tolist()
        boxes.append({k: v for k, v in r.items() if k != "segmentation"} | {"bbox": box})
    out["bbox"] = coco_ap(gt, boxes, "bbox")
    return out
