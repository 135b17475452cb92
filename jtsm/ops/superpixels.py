"""Superpixel snapping: maps averaged over superpixels and thresholded, so that a coarse mask
follows the image edges the superpixels follow. One rule everywhere: a superpixel is in when
its mean is **at least** the threshold (refined masks at predict time, and the
``superpixel-snap`` evidence of ``jtsm relabel``)."""

from __future__ import annotations

import numpy as np

__all__ = ["snap_to_superpixels", "superpixel_means"]


def superpixel_means(maps: np.ndarray, superpixels: np.ndarray) -> np.ndarray:
    """Each map of ``(..., H, W)`` replaced by its mean over each superpixel of the ``(H, W)``
    int map (same shape and dtype out)."""
    sp = superpixels.ravel()
    n = int(sp.max()) + 1 if sp.size else 0
    count = np.maximum(np.bincount(sp, minlength=n), 1)
    flat = maps.reshape(-1, sp.size)
    means = np.stack([np.bincount(sp, weights=m.astype(np.float64), minlength=n) / count
                      for m in flat])
    return means[:, sp].reshape(maps.shape).astype(maps.dtype)


def snap_to_superpixels(prob: np.ndarray, superpixels: np.ndarray,
                        threshold: float = 0.5) -> np.ndarray:
    """``(..., H, W)`` probabilities (or a 0/1 mask) -> bool masks of the superpixels whose mean
    is at least ``threshold``."""
    return superpixel_means(np.asarray(prob, np.float32), superpixels) >= threshold
