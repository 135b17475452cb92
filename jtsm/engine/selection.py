"""From proposal scores to mined segments and detections (paper Sec. 3.2, "mined outputs").

Per image and per present class (the tags on training images; image scores above
``presence_threshold`` elsewhere):

- **things**: the top-scoring proposal, plus further confident instances: proposals scoring at
  least ``instance_ratio`` x the top score that overlap no instance taken so far (mask IoU <=
  ``overlap``);
- **stuff**: the top proposal plus further confident, non-overlapping ones of the class (the
  connected components the paper treats as instances), united into one segment per class, as
  COCO panoptic keeps stuff;
- the panoptic merge then resolves overlaps (things over stuff, by score);
- **detections**: every thing class's proposal boxes with scores, box NMS, the best
  ``max_detections`` per image (COCO results format, for mAP / CorLoc).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torchvision

from jtsm.config import SegmentsConfig
from jtsm.engine.panoptic_merge import MergeConfig, merge_panoptic
from jtsm.structures import CategoryMap, PanopticSeg, ProposalSet

__all__ = ["box_nms", "calibrate_presence", "detections", "mine_image", "mined_stuff",
           "present_classes", "select_things"]


def present_classes(image_scores: np.ndarray, tags: Sequence[int] | None,
                    cfg: SegmentsConfig, thresholds: np.ndarray | None = None) -> list[int]:
    """Class indices taken as present: the tags when known, else image scores at or above
    the per-class ``thresholds`` (calibrated on the training tags) or ``presence_threshold``."""
    if tags is not None:
        return sorted(int(t) for t in tags)
    th = cfg.presence_threshold if thresholds is None else np.asarray(thresholds)
    return [int(c) for c in np.nonzero(image_scores >= th)[0]]


def calibrate_presence(image_scores: np.ndarray, tags: np.ndarray,
                       default: float = 0.5) -> np.ndarray:
    """Per-class presence thresholds maximising F1 on training images (whose tags are known).

    Arguments:
        image_scores: ``(N, C)`` image scores; tags: ``(N, C)`` 0/1.
    Returns:
        ``(C,)`` thresholds; ``default`` for a class that never or always occurs.
    """
    n, c = image_scores.shape
    out = np.full(c, default, np.float64)
    for k in range(c):
        pos = tags[:, k] > 0.5
        if pos.all() or not pos.any():
            continue
        cands = np.unique(image_scores[:, k])
        best, best_f1 = default, -1.0
        for t in cands:
            pred = image_scores[:, k] >= t
            tp = float((pred & pos).sum())
            f1 = 2 * tp / max(float(pred.sum() + pos.sum()), 1.0)
            if f1 > best_f1:
                best, best_f1 = float(t), f1
        out[k] = min(max(best, 0.0), 1.0)  # image scores lie in [0, 1]; float noise may not
    return out


def _select(ps: ProposalSet, score: np.ndarray, cfg: SegmentsConfig,
            avoid: ProposalSet | None) -> list[int]:
    """Greedy confident, non-overlapping proposals for one class (indices into ``ps``)."""
    order = np.argsort(-score, kind="stable")[: cfg.candidates]
    top = float(score[order[0]])
    chosen: list[int] = []  # positions in ``order``
    cand = ps[order]
    iou_self = cand.mask_iou()
    iou_avoid = cand.mask_iou(avoid) if avoid is not None and len(avoid) else None
    for k, p in enumerate(order):
        if chosen and (float(score[p]) < cfg.instance_ratio * top
                       or len(chosen) >= cfg.max_instances):
            break
        if chosen and iou_self[k, chosen].max() > cfg.overlap:
            continue
        if iou_avoid is not None and iou_avoid[k].max() > cfg.overlap:
            continue
        chosen.append(k)
    return [int(order[k]) for k in chosen]


def select_things(ps: ProposalSet, scores: np.ndarray, present: Sequence[int],
                  categories: CategoryMap, cfg: SegmentsConfig = SegmentsConfig()
                  ) -> tuple[list[int], list[int], list[float]]:
    """Mined thing instances: proposal indices, COCO category ids and scores.

    Per present thing class (the most confident class first) its top proposal and further
    confident ones that overlap no instance taken so far.
    """
    t_idx: list[int] = []
    t_cls: list[int] = []
    t_score: list[float] = []
    things = [c for c in present if c < categories.num_things]
    if len(ps) == 0:
        return t_idx, t_cls, t_score
    for c in sorted(things, key=lambda c: -float(scores[:, c].max())):
        avoid = ps[t_idx] if t_idx else None
        for p in _select(ps, scores[:, c], cfg, avoid):
            t_idx.append(p)
            t_cls.append(categories.category_id(c))
            t_score.append(float(scores[p, c]))
    return t_idx, t_cls, t_score


def mined_stuff(ps: ProposalSet, scores: np.ndarray, stuff: Sequence[int],
                categories: CategoryMap, cfg: SegmentsConfig = SegmentsConfig()
                ) -> tuple[list[np.ndarray], list[int], list[float]]:
    """Mined stuff: per present stuff class the union of its confident, non-overlapping
    proposals (masks, COCO category ids, top scores)."""
    s_masks, s_cls, s_score = [], [], []
    for c in stuff:
        chosen = _select(ps, scores[:, c], cfg, None)
        s_masks.append(ps.masks(chosen).any(axis=0))
        s_cls.append(categories.category_id(c))
        s_score.append(float(scores[chosen[0], c]))
    return s_masks, s_cls, s_score


def mine_image(
    ps: ProposalSet,
    scores: np.ndarray,
    present: Sequence[int],
    categories: CategoryMap,
    cfg: SegmentsConfig = SegmentsConfig(),
) -> PanopticSeg:
    """Mined panoptic segmentation of one image.

    Arguments:
        ps: the image's proposals (at the image's size).
        scores: ``(P, C)`` proposal scores over the contiguous classes.
        present: class indices (contiguous) present in the image.
    Returns:
        segments with COCO ``category_id`` and ``score``.
    """
    h, w = ps.image_size
    if len(ps) == 0 or not present:
        return merge_panoptic([], [], [], [], [], image_size=(h, w))
    stuff = [c for c in present if c >= categories.num_things]
    t_idx, t_cls, t_score = select_things(ps, scores, present, categories, cfg)
    s_masks, s_cls, s_score = mined_stuff(ps, scores, stuff, categories, cfg)
    t_masks = ps.masks(t_idx) if t_idx else np.zeros((0, h, w), bool)
    merge = MergeConfig(stuff_area=cfg.stuff_area)
    return merge_panoptic(list(t_masks), t_cls, t_score, s_masks, s_cls, s_score, merge, (h, w))


def box_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS (box IoU > ``threshold`` suppressed), best first:
    ``torchvision.ops.nms``."""
    keep = torchvision.ops.nms(torch.from_numpy(np.asarray(boxes, np.float64)),
                               torch.from_numpy(np.asarray(scores, np.float64)), threshold)
    return keep.numpy().astype(np.int64)


def detections(ps: ProposalSet, scores: np.ndarray, categories: CategoryMap, image_id: int,
               cfg: SegmentsConfig = SegmentsConfig()) -> list[dict[str, Any]]:
    """COCO results (``bbox`` XYWH, ``score``) of thing classes after per-class NMS."""
    out: list[dict[str, Any]] = []
    for c in range(categories.num_things):
        order = np.argsort(-scores[:, c], kind="stable")[: cfg.max_detections]
        keep = order[box_nms(ps.boxes[order], scores[order, c], cfg.nms)]
        for p in keep:
            x0, y0, x1, y1 = (float(v) for v in ps.boxes[p])
            if x1 <= x0 or y1 <= y0:
                continue
            out.append({"image_id": int(image_id), "category_id": categories.category_id(c),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[p, c])})
    out.sort(key=lambda d: -d["score"])
    return out[: cfg.max_detections]
