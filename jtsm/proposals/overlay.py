"""Common superpixel maps: overlaying several segmentations, merging indistinguishable cells.

Proposals from different initial segmentations can only share one superpixel map if it refines
all of them. The overlay (intersection) of label maps does: its cells are the unique tuples of
labels, and every region of every segmentation is exactly a set of cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["compact_columns", "felzenszwalb_segment", "overlay"]

#: keys below this size are relabelled with a lookup table instead of a sort
_LUT_LIMIT = 1 << 26


def _relabel(key: np.ndarray) -> np.ndarray:
    """Map arbitrary non-negative int64 keys to ``0 .. n-1`` (in increasing key order)."""
    top = int(key.max()) + 1 if key.size else 0
    if top <= min(_LUT_LIMIT, 8 * key.size):
        present = np.zeros(top, bool)
        present[key] = True
        lut = np.cumsum(present, dtype=np.int64) - 1
        return lut[key]
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def overlay(label_maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Intersect segmentations.

    Arguments:
        label_maps: ``n`` label maps ``(H, W)``, labels ``0 .. R_i - 1``.

    Returns:
        ``cells`` ``(H, W)`` int64 in ``0 .. C-1`` and ``cell_labels`` ``(n, C)`` int64: the
        label of every cell in every input map.
    """
    if not label_maps:
        raise ValueError("overlay needs at least one label map")
    shape = label_maps[0].shape
    flat = [np.asarray(m).reshape(-1).astype(np.int64) for m in label_maps]
    key = _relabel(flat[0])
    for f in flat[1:]:
        key = _relabel(key * (int(f.max()) + 1) + f)
    n_cells = int(key.max()) + 1 if key.size else 0
    rep = np.zeros(n_cells, np.int64)
    rep[key] = np.arange(key.size)
    cell_labels = np.stack([f[rep] for f in flat]) if n_cells else np.zeros((len(flat), 0))
    return key.reshape(shape), cell_labels.astype(np.int64)


def compact_columns(
    cells: np.ndarray, membership: sp.csr_matrix, seed: int = 0
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Merge cells that no proposal tells apart (identical membership columns).

    Columns are compared by a random 64-bit signature (sum of per-proposal random numbers,
    wrapping), the first occurrence keeps its relative order. Exact up to hash collisions
    (probability ~ C^2 / 2^64).

    Returns:
        ``(cells', membership')`` with ``cells'`` ``(H, W)`` int32 and fewer columns.
    """
    p, c = membership.shape
    rng = np.random.default_rng(seed)
    r = rng.integers(0, np.iinfo(np.int64).max, size=p, dtype=np.int64).astype(np.uint64)
    csc = membership.tocsc()
    csc.sort_indices()
    vals = r[csc.indices]
    cum = np.concatenate([[np.uint64(0)], np.cumsum(vals, dtype=np.uint64)])
    with np.errstate(over="ignore"):
        sig = cum[csc.indptr[1:]] - cum[csc.indptr[:-1]]
    _, first, inverse = np.unique(sig, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    new_of_old = rank[inverse.reshape(-1)]
    # membership of a merged cell = column of its first old cell
    keep_old = np.sort(first)
    new_member = membership[:, keep_old]
    new_cells = new_of_old[cells].astype(np.int32)
    return new_cells, sp.csr_matrix(new_member, dtype=bool)


def felzenszwalb_segment(
    image: np.ndarray, k: float, sigma: float = 0.8, min_size: int | None = None
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation (OpenCV) -> ``(H, W)`` int32 labels.

    ``min_size`` defaults to ``k`` (as in the selective search paper's code).

    Raises:
        MissingDependencyError: OpenCV without its contrib modules (``cv2.ximgproc``).
    """
    from jtsm.optional_deps import require_ximgproc

    gs = require_ximgproc("Felzenszwalb graph segmentation (selective-search and felzenszwalb "
                          "proposals)").segmentation.createGraphSegmentation(
        float(sigma), float(k), int(k if min_size is None else min_size)
    )
    return gs.processImage(np.ascontiguousarray(image))
