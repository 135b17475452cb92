"""Region features for hierarchical grouping (Uijlings et al., IJCV 2013, section 3.2).

Per pixel, every feature is reduced to a bin index once per colour space; a region's histogram
is then one ``np.bincount`` over ``(region, bin)`` pairs, so no Python loop touches pixels.

- colour: 25 bins per channel, L1-normalised over the region (sum 1);
- texture: Gaussian derivatives (sigma 1) in 8 orientations per channel, 10 bins each,
  L1-normalised (sum 1);
- size and fill are computed from region sizes and boxes in :mod:`jtsm.proposals.grouping`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
from scipy import ndimage

__all__ = [
    "COLOUR_SPACES",
    "PixelBins",
    "adjacency",
    "convert_colour",
    "pixel_bins",
    "region_boxes",
    "region_histograms",
    "region_histograms_many",
]

COLOUR_BINS = 25
TEXTURE_BINS = 10
ORIENTATIONS = 8

#: colour spaces of the paper: name -> (conversion from RGB, value range of each channel)
COLOUR_SPACES = ("hsv", "lab", "rgi", "h", "i")


def convert_colour(rgb: np.ndarray, space: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """RGB ``uint8 (H, W, 3)`` -> ``(image (H, W, C) uint8, value range per channel)``.

    ``rgi`` is (r, g, intensity) as in the paper; ``h`` and ``i`` are single channels.
    """
    if space == "hsv":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), (180, 256, 256)
    if space == "lab":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab), (256, 256, 256)
    if space == "rgi":
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return np.dstack([rgb[:, :, 0], rgb[:, :, 1], grey]), (256, 256, 256)
    if space == "h":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[:, :, :1].copy(), (180,)
    if space == "i":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], (256,)
    raise ValueError(f"unknown colour space {space!r} (known: {', '.join(COLOUR_SPACES)})")


@dataclass(frozen=True)
class PixelBins:
    """Per-pixel histogram bins of one colour space.

    Attributes:
        bins: ``(H*W, F)`` int32 global bin index of each pixel for each of the ``F`` features
            (``C`` colour channels then ``8 C`` texture responses).
        colour_dims: number of colour histogram dimensions (``25 C``).
        texture_dims: number of texture histogram dimensions (``80 C``).
        n_colour: ``C`` (columns ``0 .. C-1`` of ``bins`` are colour, the rest texture).
    """

    bins: np.ndarray
    colour_dims: int
    texture_dims: int
    n_colour: int

    @property
    def dims(self) -> int:
        return self.colour_dims + self.texture_dims


def pixel_bins(image: np.ndarray, ranges: tuple[int, ...]) -> PixelBins:
    """Colour and texture bin indices of every pixel of ``image (H, W, C)`` uint8."""
    h, w, c = image.shape
    n = h * w
    bins = np.empty((n, c * (1 + ORIENTATIONS)), np.int32)
    for ch in range(c):
        v = image[:, :, ch].reshape(-1).astype(np.int32)
        bins[:, ch] = np.minimum(v * COLOUR_BINS // ranges[ch], COLOUR_BINS - 1) + ch * COLOUR_BINS
    colour_dims = c * COLOUR_BINS
    col = c
    angles = np.arange(ORIENTATIONS // 2) * (np.pi / (ORIENTATIONS // 2))
    for ch in range(c):
        smooth = cv2.GaussianBlur(image[:, :, ch].astype(np.float32), (0, 0), 1.0)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
        for a in angles:
            d = (np.cos(a) * gx + np.sin(a) * gy).reshape(-1)
            for resp in (np.maximum(d, 0), np.maximum(-d, 0)):
                top = float(resp.max())
                scale = TEXTURE_BINS / top if top > 0 else 0.0
                b = np.minimum((resp * scale).astype(np.int32), TEXTURE_BINS - 1)
                bins[:, col] = b + colour_dims + (col - c) * TEXTURE_BINS
                col += 1
    return PixelBins(bins, colour_dims, c * ORIENTATIONS * TEXTURE_BINS, c)


def _counts(labels: np.ndarray, n_regions: int, pb: PixelBins) -> np.ndarray:
    """``(R, D)`` float32 raw bin counts of every region (one ``bincount``)."""
    lab = labels.reshape(-1).astype(np.int64) * pb.dims
    counts = np.bincount((pb.bins + lab[:, None]).reshape(-1), minlength=n_regions * pb.dims)
    return counts.reshape(n_regions, pb.dims).astype(np.float32)


def _normalise(counts: np.ndarray, pb: PixelBins) -> np.ndarray:
    """Raw counts -> colour part and texture part each summing to 1 (in place)."""
    size = np.maximum(counts[:, : pb.colour_dims].sum(axis=1), 1)[:, None] / pb.n_colour
    counts[:, : pb.colour_dims] /= size * pb.n_colour
    counts[:, pb.colour_dims :] /= size * (pb.bins.shape[1] - pb.n_colour)
    return counts


def region_histograms(labels: np.ndarray, n_regions: int, pb: PixelBins) -> np.ndarray:
    """``(R, D)`` float32 histograms: colour part and texture part each sum to 1 per region."""
    return _normalise(_counts(labels, n_regions, pb), pb)


def region_histograms_many(label_maps: Sequence[np.ndarray], pb: PixelBins) -> list[np.ndarray]:
    """:func:`region_histograms` of several segmentations of the same image.

    The pixels are histogrammed once, into the cells of the segmentations' overlay; each
    region's histogram is then the sum over its cells (a sparse ``(R, C) @ (C, D)`` product).
    """
    if len(label_maps) == 1:
        m = label_maps[0]
        return [region_histograms(m, int(m.max()) + 1, pb)]
    from jtsm.proposals.overlay import overlay

    cells, cell_labels = overlay(label_maps)
    n_cells = cell_labels.shape[1]
    cell_counts = _counts(cells, n_cells, pb)
    out = []
    for lab in cell_labels:
        r = int(lab.max()) + 1
        agg = sp.csr_matrix((np.ones(n_cells, np.float32), (lab, np.arange(n_cells))),
                            shape=(r, n_cells))
        out.append(_normalise(np.asarray(agg @ cell_counts, np.float32), pb))
    return out


def adjacency(labels: np.ndarray) -> np.ndarray:
    """``(E, 2)`` int64 pairs ``a < b`` of regions touching (4- or diagonal neighbours)."""
    lab = labels.astype(np.int64)
    n = int(lab.max()) + 1
    pairs = []
    for a, b in (
        (lab[:, :-1], lab[:, 1:]),
        (lab[:-1, :], lab[1:, :]),
        (lab[:-1, :-1], lab[1:, 1:]),
        (lab[:-1, 1:], lab[1:, :-1]),
    ):
        d = a != b
        lo = np.minimum(a[d], b[d])
        hi = np.maximum(a[d], b[d])
        pairs.append(lo * n + hi)
    keys = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, np.int64)
    return np.stack([keys // n, keys % n], axis=1)


def region_boxes(labels: np.ndarray, n_regions: int) -> np.ndarray:
    """``(R, 4)`` float64 XYXY boxes (exclusive right/bottom) of labels ``0 .. R-1``."""
    boxes = np.zeros((n_regions, 4), np.float64)
    for i, sl in enumerate(ndimage.find_objects(labels.astype(np.int32) + 1)):
        if sl is not None:
            boxes[i] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    return boxes
