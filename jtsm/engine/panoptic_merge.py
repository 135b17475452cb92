"""Panoptic merge: scored instance masks + stuff masks -> one non-overlapping segmentation.

The rules are the field's (Panoptic FPN's and the JTSM authors' code; docs/method.md):

1. instances sorted by score; stop below ``score_threshold``;
2. an instance whose mask is more than ``overlap_threshold`` covered by earlier ones is skipped,
   otherwise its free part is pasted;
3. the remaining pixels come from the stuff masks (in the order given, or by score);
4. a stuff region smaller than ``stuff_area`` pixels is dropped (void).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jtsm.structures import PanopticSeg

__all__ = ["MergeConfig", "merge_panoptic"]


@dataclass(frozen=True)
class MergeConfig:
    """Thresholds of :func:`merge_panoptic`, as every jtsm stage merges (mined segments,
    pseudo labels, predictions): no score threshold (the things are chosen before the merge:
    presence thresholds, ``segments.*``), an instance whose free part is under half its area is
    dropped, stuff regions under ``stuff_area`` pixels (``segments.stuff_area``) are dropped.
    (Detectron2's COCO values: 0.5, 0.5, 4096.)"""

    score_threshold: float = 0.0
    overlap_threshold: float = 0.5
    stuff_area: int = 16


def merge_panoptic(
    thing_masks: Sequence[np.ndarray] | np.ndarray,
    thing_classes: Sequence[int],
    thing_scores: Sequence[float],
    stuff_masks: Sequence[np.ndarray] | np.ndarray,
    stuff_classes: Sequence[int],
    stuff_scores: Sequence[float] | None = None,
    cfg: MergeConfig = MergeConfig(),
    image_size: tuple[int, int] | None = None,
) -> PanopticSeg:
    """Merge instances and stuff into a :class:`PanopticSeg` (ids 1..N, 0 = void).

    Arguments:
        thing_masks: ``(N, H, W)`` bool instance masks; thing_classes/scores: ``(N,)``.
        stuff_masks: ``(M, H, W)`` bool stuff masks (may overlap; earlier or higher-scored
            wins); stuff_classes ``(M,)``; stuff_scores ``(M,)`` or ``None`` (given order).
        image_size: ``(H, W)`` when there are no masks at all.
    Returns:
        segments carry ``category_id`` (the class ids given) and ``score``.
    """
    masks_t = [np.asarray(m, bool) for m in thing_masks]
    masks_s = [np.asarray(m, bool) for m in stuff_masks]
    if masks_t:
        shape = masks_t[0].shape
    elif masks_s:
        shape = masks_s[0].shape
    elif image_size is not None:
        shape = tuple(image_size)
    else:
        raise ValueError("merge_panoptic needs masks or image_size")
    ids = np.zeros(shape, np.int64)
    taken = np.zeros(shape, bool)
    segments = []
    next_id = 1
    for i in np.argsort(-np.asarray(thing_scores, np.float64), kind="stable"):
        score = float(thing_scores[i])
        if score < cfg.score_threshold:
            break
        m = masks_t[i]
        area = int(m.sum())
        if area == 0:
            continue
        free = m & ~taken
        if (area - int(free.sum())) / area > cfg.overlap_threshold:
            continue
        if not free.any():
            continue
        ids[free] = next_id
        taken |= free
        segments.append({"id": next_id, "category_id": int(thing_classes[i]), "iscrowd": 0,
                         "score": score})
        next_id += 1
    order = range(len(masks_s)) if stuff_scores is None else np.argsort(
        -np.asarray(stuff_scores, np.float64), kind="stable")
    by_class: dict[int, int] = {}
    for i in order:
        free = masks_s[i] & ~taken
        if int(free.sum()) < cfg.stuff_area:
            continue
        cls = int(stuff_classes[i])
        score = 1.0 if stuff_scores is None else float(stuff_scores[i])
        if cls in by_class:  # one segment per stuff class, as COCO panoptic
            sid = by_class[cls]
        else:
            sid = next_id
            by_class[cls] = sid
            next_id += 1
            segments.append({"id": sid, "category_id": cls, "iscrowd": 0, "score": score})
        ids[free] = sid
        taken |= free
    return PanopticSeg(ids, segments).with_stats()
