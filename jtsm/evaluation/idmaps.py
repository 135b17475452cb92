"""Segment-id maps for evaluation: fast PNG decoding and the joint gt x pred histogram.

A panoptic PNG stores ``id = R + 256 G + 256^2 B``. Decoding goes through OpenCV and packs the
three bytes with one colour conversion and a ``uint32`` view (no int64 temporaries). Ids are then
made contiguous with a reusable lookup table over the 2^24 possible ids, so that one
``np.bincount`` over ``gt_index * n_pred + pred_index`` gives every gt x pred intersection of an
image at once.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from jtsm.data.coco_panoptic import read_panoptic_png
from jtsm.errors import DataError

__all__ = ["IdIndexer", "joint_histogram", "read_id_png"]

ID_LIMIT = 1 << 24  # ids live in [0, 2^24): three 8-bit channels
UNKNOWN = 0  # index of pixels whose id is neither void nor a listed segment
VOID = 1  # index of void pixels (id 0)
FIRST = 2  # index of the first listed segment


def read_id_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a panoptic PNG to an ``(H, W)`` ``uint32`` id map; errors name the file."""
    return read_panoptic_png(path, np.uint32)


class IdIndexer:
    """Joint gt x pred histograms of id maps, through a reusable id -> index lookup table.

    Indices: unknown id -> 0, void (id 0) -> 1, ``seg_ids[k]`` -> k + 2. One table of 2^24
    ``uint16`` entries is kept and only the entries of the current image are set and cleared,
    so indexing a map costs a single gather.
    """

    def __init__(self) -> None:
        self._table = np.zeros(ID_LIMIT, np.uint16)

    def index(self, ids: np.ndarray, seg_ids: np.ndarray, step: int = 1) -> np.ndarray:
        """``(H, W)`` ids -> ``(H, W)`` ``uint16`` indices times ``step``.

        ``seg_ids`` must be unique, nonzero and < 2^24; ``(len(seg_ids) + 2) * step`` must not
        exceed 2^16.
        """
        if (len(seg_ids) + FIRST) * step > 1 << 16:
            raise DataError(f"too many segments in one image ({len(seg_ids)})")
        if ids.dtype != np.uint32:
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= ID_LIMIT):
                raise DataError("segment ids must lie in [0, 2^24)")
            ids = ids.astype(np.uint32)
        t = self._table
        t[0] = VOID * step
        t[seg_ids] = np.arange(FIRST, FIRST + len(seg_ids), dtype=np.uint16) * step
        try:
            return np.take(t, ids)
        finally:
            t[seg_ids] = UNKNOWN
            t[0] = UNKNOWN

    def histogram(
        self, gt_ids: np.ndarray, gt_seg_ids: np.ndarray, pred_ids: np.ndarray,
        pred_seg_ids: np.ndarray,
    ) -> np.ndarray:
        """``(n_gt + 2, n_pred + 2)`` int64 pixel counts of every (gt index, pred index) pair.

        Both maps must have the same shape. Fast path (up to 2^16 index pairs and 2^24 pixels):
        the gt indices are pre-multiplied in the table, one ``uint16`` add combines the maps
        and OpenCV's histogram counts them; otherwise a ``bincount`` over int64 codes.
        """
        n_g, n_p = len(gt_seg_ids) + FIRST, len(pred_seg_ids) + FIRST
        if n_g * n_p <= 1 << 16 and gt_ids.size < ID_LIMIT:
            comb = self.index(gt_ids, gt_seg_ids, step=n_p)
            comb += self.index(pred_ids, pred_seg_ids)
            hist = cv2.calcHist([comb], [0], None, [n_g * n_p], [0, n_g * n_p])
            return hist.astype(np.int64).reshape(n_g, n_p)
        g = self._index_wide(gt_ids, gt_seg_ids)
        p = self._index_wide(pred_ids, pred_seg_ids)
        return joint_histogram(g, p, n_g, n_p)

    def _index_wide(self, ids: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
        """Like :meth:`index` for any number of segments (sorted search, int64 result)."""
        ids = np.asarray(ids, np.int64)
        order = np.argsort(seg_ids)
        sorted_ids = np.asarray(seg_ids, np.int64)[order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(order) - 1, 0))
        out = np.full(ids.shape, UNKNOWN, np.int64)
        if len(order):
            hit = sorted_ids[pos] == ids
            out[hit] = order[pos[hit]] + FIRST
        out[ids == 0] = VOID
        return out

    def unknown_ids(self, ids: np.ndarray, seg_ids: np.ndarray, limit: int = 5) -> list[int]:
        """The first ``limit`` distinct ids of ``ids`` that are neither void nor listed."""
        index = self._index_wide(ids, seg_ids)
        return np.unique(ids[index == UNKNOWN])[:limit].tolist()


def joint_histogram(
    gt_index: np.ndarray, pred_index: np.ndarray, n_gt: int, n_pred: int
) -> np.ndarray:
    """``(n_gt, n_pred)`` int64 pixel counts of every (gt index, pred index) pair."""
    comb = gt_index.ravel().astype(np.intp)
    comb *= n_pred
    comb += pred_index.ravel()
    return np.bincount(comb, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
