"""Boundary IoU and Boundary PQ, as defined in Cheng, Girshick, Dollár, Berg and Kirillov,
"Boundary IoU: Improving Object-Centric Image Segmentation Evaluation" (CVPR 2021).

Mask IoU is dominated by a segment's interior: a mask whose edges follow a coarse grid (staircase
edges at the backbone's stride) loses few pixels and keeps a high IoU. Boundary IoU scores only
the pixels near the contours.

**Boundary band.** For a binary mask ``G`` of an ``H x W`` image and a distance ``d``, ``G_d`` is
the set of pixels within distance ``d`` of the contour of ``G``; the paper's Boundary IoU uses
its inner part ``G_d ∩ G``, the pixels of ``G`` within ``d`` of a pixel outside ``G``. As in the
authors' reference implementation:

- distance is chessboard distance (``d`` erosions by a 3 x 3 square, here one erosion by a
  ``(2d + 1) x (2d + 1)`` square, the same set);
- the image's outside counts as outside ``G`` (the mask is padded with zeros), so a mask cut by
  the image edge has a band along that edge too;
- ``d = max(1, round(dilation_ratio * sqrt(H^2 + W^2)))`` with ``dilation_ratio = 0.02`` by
  default (16 pixels on a 640 x 480 image; ``round`` halves to even).

**Boundary IoU** of gt mask ``G`` and predicted mask ``P``::

    |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|

**Boundary PQ** is PQ with the IoU of each gt / predicted segment pair replaced by
``min(mask IoU, boundary IoU)``, for matching (``> 0.5``) and in SQ. Every other rule is PQ's
(:mod:`jtsm.evaluation.panoptic`, panopticapi's): same class, crowd segments never match, the
mask IoU's union leaves out the prediction's pixels on gt void, and so does the boundary IoU's
(the prediction's band pixels on gt void), an unmatched prediction mostly on void plus crowd is
no false positive. Since ``min(...) <= mask IoU``, Boundary PQ and RQ never exceed mask PQ and RQ
(per class too); SQ may (a lost match can be the one that lowered the mean).

Per image, every segment's band comes from two morphological filters of the segment-index map
(a pixel is in its segment's band iff the ``(2d + 1)^2`` window around it holds another index or
leaves the image: window minimum != window maximum), and one ``bincount`` over the band pixels
gives every gt x pred band intersection, so the cost does not grow with the number of segments.

Entry points: :func:`boundary_band` and :func:`boundary_iou` (binary masks),
:func:`evaluate_boundary_pq` (files, as :func:`jtsm.evaluation.panoptic.evaluate_pq`),
:func:`boundary_pq_from_pairs` / :class:`BoundaryPanopticEvaluator` (in-memory pairs).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from jtsm.errors import ConfigError
from jtsm.evaluation.idmaps import FIRST, VOID, IdIndexer, pair_runs, png_pair_runs
from jtsm.evaluation.panoptic import (
    PanopticEvaluator,
    PQStats,
    SegmentTable,
    _build_jobs,
    _decode_job,
    _match,
    _worker_indexer,
    checked_histogram,
    sum_chunks,
    summarize_pq,
)
from jtsm.structures import CategoryMap, PanopticSeg

__all__ = [
    "DEFAULT_DILATION_RATIO",
    "BoundaryPanopticEvaluator",
    "BoundaryStats",
    "boundary_band",
    "boundary_iou",
    "boundary_ious",
    "boundary_pq_from_pairs",
    "dilation_pixels",
    "evaluate_boundary_pq",
    "image_boundary_stats",
    "segment_bands",
    "summarize_boundary_pq",
]

#: The paper's default band width, as a fraction of the image diagonal.
DEFAULT_DILATION_RATIO = 0.02


# --------------------------------------------------------------------------------------------
# Bands and Boundary IoU of binary masks
# --------------------------------------------------------------------------------------------
def _check_ratio(dilation_ratio: float) -> float:
    try:
        r = float(dilation_ratio)
    except (TypeError, ValueError):
        r = math.nan
    if not 0.0 < r <= 1.0:  # also refuses NaN
        raise ConfigError(f"dilation ratio must be a number in (0, 1], got {dilation_ratio!r}")
    return r


def dilation_pixels(height: int, width: int, dilation_ratio: float = DEFAULT_DILATION_RATIO) -> int:
    """The band width ``d = max(1, round(dilation_ratio * sqrt(H^2 + W^2)))`` in pixels."""
    r = _check_ratio(dilation_ratio)
    return max(1, int(round(r * math.sqrt(height * height + width * width))))


@functools.lru_cache(maxsize=16)
def _square(d: int) -> np.ndarray:
    return np.ones((2 * d + 1, 2 * d + 1), np.uint8)


def boundary_band(mask: np.ndarray, dilation_ratio: float = DEFAULT_DILATION_RATIO) -> np.ndarray:
    """``G_d ∩ G`` of a binary mask: its pixels within ``d`` (chessboard) of a pixel outside it
    or of the image edge.

    Arguments:
        mask: ``(H, W)`` binary mask (any dtype; nonzero is inside).
        dilation_ratio: ``d`` as a fraction of the image diagonal (see :func:`dilation_pixels`).

    Returns:
        ``(H, W)`` bool.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"boundary_band needs an (H, W) mask, got shape {m.shape}")
    d = dilation_pixels(m.shape[0], m.shape[1], dilation_ratio)
    if m.size == 0:
        return np.zeros(m.shape, bool)
    m = (m != 0).view(np.uint8)
    inner = cv2.erode(m, _square(d), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return m > inner


def boundary_iou(
    gt_mask: np.ndarray, pred_mask: np.ndarray, dilation_ratio: float = DEFAULT_DILATION_RATIO
) -> float:
    """Boundary IoU ``|(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|`` of two ``(H, W)``
    binary masks of the same image (``d`` from its diagonal). Raises ``ValueError`` for masks
    of different shapes or two empty masks (no boundary: the ratio is undefined)."""
    g, p = np.asarray(gt_mask), np.asarray(pred_mask)
    if g.shape != p.shape:
        raise ValueError(f"boundary_iou needs masks of one shape, got {g.shape} and {p.shape}")
    gb, pb = boundary_band(g, dilation_ratio), boundary_band(p, dilation_ratio)
    union = int(np.count_nonzero(gb | pb))
    if union == 0:
        raise ValueError("boundary_iou of two empty masks is undefined")
    return int(np.count_nonzero(gb & pb)) / union


def segment_bands(index: np.ndarray, d: int) -> np.ndarray:
    """Every segment's band at once: pixels whose ``(2d + 1) x (2d + 1)`` window holds another
    index or leaves the image.

    Arguments:
        index: ``(H, W)`` segment-index map (any integer dtype, values below 2^24).
        d: band width in pixels.

    Returns:
        ``(H, W)`` bool; on a segment's pixels it is that segment's ``G_d ∩ G``.
    """
    if index.dtype == np.uint16:
        small = index
    else:  # OpenCV filters 8/16-bit integers and floats; float32 holds every index exactly
        small = index.astype(np.uint16 if index.size == 0 or index.max() < 1 << 16
                             else np.float32)
    k = _square(d)
    # Outside the image reads as 0 for the minimum: below every index the caller scores (>= 1).
    lo = cv2.erode(small, k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    hi = cv2.dilate(small, k, borderType=cv2.BORDER_REPLICATE)
    return lo != hi


def boundary_ious(gt_index: np.ndarray, pred_index: np.ndarray, n_gt: int, n_pred: int,
                  d: int) -> np.ndarray:
    """The ``(n_gt - 2, n_pred - 2)`` Boundary IoUs of every gt x predicted segment pair.

    Arguments:
        gt_index, pred_index: ``(H, W)`` integer index maps as :class:`IdIndexer` numbers ids
            (1: void, 2...: segments; no unknown ids).
        n_gt, n_pred: number of indices (segments + 2).
        d: band width in pixels.

    The union leaves out the predicted band's pixels on gt void (as PQ's mask union does).
    """
    gb = segment_bands(gt_index, d)
    gb &= gt_index >= FIRST
    pb = segment_bands(pred_index, d)
    pb &= pred_index >= FIRST
    gt_area = np.bincount(gt_index[gb], minlength=n_gt)[FIRST:]
    pred_area = np.bincount(pred_index[pb], minlength=n_pred)[FIRST:]
    both = pb & (gb | (gt_index == VOID))  # predicted band on gt band or on gt void
    key = gt_index[both].astype(np.intp)
    key *= n_pred
    key += pred_index[both]
    hist = np.bincount(key, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
    inter = hist[FIRST:, FIRST:]
    union = gt_area[:, None] + pred_area[None, :] - inter - hist[VOID, FIRST:][None, :]
    out = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------
@dataclass
class BoundaryStats:
    """Per-class sums of one or more images for Boundary PQ and, from the same matching pass,
    mask PQ."""

    boundary: PQStats
    mask: PQStats

    @classmethod
    def zeros(cls, num_classes: int) -> BoundaryStats:
        return cls(PQStats.zeros(num_classes), PQStats.zeros(num_classes))

    def __iadd__(self, other: BoundaryStats) -> BoundaryStats:
        self.boundary += other.boundary
        self.mask += other.mask
        return self


def image_boundary_stats(
    gt_ids: np.ndarray,
    gt: SegmentTable,
    pred_ids: np.ndarray,
    pred: SegmentTable,
    num_classes: int,
    indexer: IdIndexer,
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
    gt_name: str = "ground truth",
    pred_name: str = "prediction",
) -> BoundaryStats:
    """Boundary PQ and mask PQ counts of one image.

    A map is an ``(H, W)`` id map or the ``(H, W, 3)`` uint8 R, G, B bytes of a panoptic PNG;
    the checks and their messages are PQ's (:func:`checked_histogram`).
    """
    hist = checked_histogram(gt_ids, gt, pred_ids, pred, indexer, gt_name, pred_name)
    g, p, lengths = pair_runs(gt_ids, pred_ids, indexer.scratch)
    return _stats_from_runs(gt_ids.shape[:2], g, p, lengths, hist, gt, pred, num_classes,
                            indexer, dilation_ratio, pred_name)


def _stats_from_runs(
    size: tuple[int, int],
    g: np.ndarray,
    p: np.ndarray,
    lengths: np.ndarray,
    hist: np.ndarray,
    gt: SegmentTable,
    pred: SegmentTable,
    num_classes: int,
    indexer: IdIndexer,
    dilation_ratio: float,
    pred_name: str,
) -> BoundaryStats:
    """One image's counts from its runs of equal (gt id, pred id) pixels and their checked
    joint histogram.

    The ``(H, W)`` index maps are the runs' indices repeated over their lengths, 16-bit while
    the segments allow: no id map is built."""
    mask = _match(hist, gt, pred, num_classes, pred_name)
    n_gt, n_pred = hist.shape
    dtype = np.uint16 if max(n_gt, n_pred) <= 1 << 16 else np.int64
    gi = np.repeat(indexer.index(g, gt.ids).astype(dtype), lengths).reshape(size)
    pi = np.repeat(indexer.index(p, pred.ids).astype(dtype), lengths).reshape(size)
    cap = boundary_ious(gi, pi, n_gt, n_pred, dilation_pixels(*size, dilation_ratio))
    return BoundaryStats(_match(hist, gt, pred, num_classes, pred_name, cap=cap), mask)


def summarize_boundary_pq(
    stats: BoundaryStats, categories: CategoryMap, dilation_ratio: float
) -> dict[str, Any]:
    """Boundary PQ in :func:`summarize_pq`'s shape, plus ``mask`` (mask PQ of the same pass,
    same shape) and ``dilation_ratio``."""
    out = summarize_pq(stats.boundary, categories)
    out["mask"] = summarize_pq(stats.mask, categories)
    out["dilation_ratio"] = dilation_ratio
    return out


# --------------------------------------------------------------------------------------------
# In memory
# --------------------------------------------------------------------------------------------
class BoundaryPanopticEvaluator(PanopticEvaluator):
    """Accumulates Boundary PQ over in-memory :class:`PanopticSeg` pairs (reset / process /
    evaluate), as :class:`jtsm.evaluation.panoptic.PanopticEvaluator` does PQ.

    Arguments:
        categories: the dataset's categories (a :class:`CategoryMap` or COCO category dicts).
        dilation_ratio: band width as a fraction of the image diagonal.
    """

    def __init__(
        self,
        categories: CategoryMap | Sequence[dict[str, Any]],
        dilation_ratio: float = DEFAULT_DILATION_RATIO,
    ) -> None:
        self.dilation_ratio = _check_ratio(dilation_ratio)
        super().__init__(categories)

    def _zeros(self) -> BoundaryStats:
        return BoundaryStats.zeros(self.categories.num_classes)

    def _image_stats(self, gt: PanopticSeg, gt_t: SegmentTable, pred: PanopticSeg,
                     pred_t: SegmentTable, gt_name: str, pred_name: str) -> BoundaryStats:
        return image_boundary_stats(gt.ids, gt_t, pred.ids, pred_t,
                                    self.categories.num_classes, self._indexer,
                                    self.dilation_ratio, gt_name, pred_name)

    def evaluate(self) -> dict[str, Any]:
        """The result of :func:`summarize_boundary_pq` over the images processed so far."""
        return summarize_boundary_pq(self.stats, self.categories, self.dilation_ratio)


def boundary_pq_from_pairs(
    pairs: Iterable[tuple[PanopticSeg, PanopticSeg]],
    categories: CategoryMap | Sequence[dict[str, Any]],
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
) -> dict[str, Any]:
    """Boundary PQ of ``(gt, pred)`` :class:`PanopticSeg` pairs, no files."""
    ev = BoundaryPanopticEvaluator(categories, dilation_ratio)
    for gt, pred in pairs:
        ev.process(gt, pred)
    return ev.evaluate()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _run_boundary_jobs(jobs: Sequence[Any], num_classes: int, dilation_ratio: float
                       ) -> BoundaryStats:
    indexer = _worker_indexer()
    stats = BoundaryStats.zeros(num_classes)
    for job in jobs:
        stats += _job_stats(job, num_classes, indexer, dilation_ratio)
    return stats


def _job_stats(job: Any, num_classes: int, indexer: IdIndexer, dilation_ratio: float
               ) -> BoundaryStats:
    """As PQ's files path: the C extension's runs straight from the two PNGs when it takes
    them and the image is sound; else both decoded whole and checked, so errors read alike."""
    runs = png_pair_runs(job.gt_png, job.pred_png, indexer.scratch)
    if runs is not None:
        size, g, p, lengths = runs
        if job.size is None or size == job.size:
            hist = indexer.run_histogram(g, job.gt.ids, p, job.pred.ids, lengths)
            if not hist[0].any() and not hist[:, 0].any() and hist[FIRST:].sum(1).all():
                return _stats_from_runs(size, g, p, lengths, hist, job.gt, job.pred,
                                        num_classes, indexer, dilation_ratio, job.pred_png)
    gt_ids, pred_ids = _decode_job(job, indexer)
    return image_boundary_stats(gt_ids, job.gt, pred_ids, job.pred, num_classes, indexer,
                                dilation_ratio, job.gt_png, job.pred_png)


def evaluate_boundary_pq(
    gt_json: str | os.PathLike[str],
    pred_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None = None,
    pred_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    image_ids: Iterable[int] | None = None,
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
) -> dict[str, Any]:
    """Boundary PQ of a COCO panoptic prediction against a COCO panoptic ground truth.

    Files, folders, ``workers``, ``progress``, ``image_ids`` and every error are those of
    :func:`jtsm.evaluation.panoptic.evaluate_pq`.

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": {name: {"pq", "sq",
        "rq"}}, "mask": {the same for mask PQ}, "dilation_ratio": r}``, fractions in [0, 1].
    """
    ratio = _check_ratio(dilation_ratio)
    jobs, cats = _build_jobs(gt_json, pred_json, gt_dir, pred_dir, image_ids)
    run = functools.partial(_run_boundary_jobs, num_classes=cats.num_classes,
                            dilation_ratio=ratio)
    stats = sum_chunks(jobs, run, BoundaryStats.zeros(cats.num_classes), workers, progress)
    return summarize_boundary_pq(stats, cats, ratio)
