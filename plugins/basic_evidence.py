"""``superpixel-snap`` and ``none`` evidence methods.

``superpixel-snap`` snaps a mined segment to the image's own superpixels (Felzenszwalb): a
superpixel joins the mask when more than ``threshold`` of it is covered, so the border follows
colour edges. ``none`` returns the mined segment unchanged (the paper's "no re-estimation").
Firm foreground and background are kept in both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jtsm.hookspecs import hookimpl
from jtsm.ops.superpixels import snap_to_superpixels
from jtsm.plugins import EvidenceMethod


def _apply_firm(mask: np.ndarray, fg: np.ndarray, box: np.ndarray | None,
                bg: np.ndarray | None) -> np.ndarray:
    out = mask | fg
    if box is not None:
        h, w = fg.shape
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        inside = np.zeros((h, w), bool)
        inside[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = True
        out &= inside | fg
    if bg is not None:
        out &= ~(bg & ~fg)
    return out


def no_refine(image: np.ndarray, fg: np.ndarray, box: np.ndarray | None = None,
              bg: np.ndarray | None = None, **_: Any) -> np.ndarray:
    """The mined segment itself."""
    return fg.astype(bool).copy()


def superpixel_snap(image: np.ndarray, fg: np.ndarray, box: np.ndarray | None = None,
                    bg: np.ndarray | None = None, *, threshold: float = 0.5,
                    scale: float = 100.0, sigma: float = 0.8, min_size: int = 20,
                    superpixels: np.ndarray | None = None, **_: Any) -> np.ndarray:
    """Snap ``fg`` to the superpixels it covers by at least ``threshold``
    (:func:`jtsm.ops.superpixels.snap_to_superpixels`, the rule refined masks follow too).

    Arguments:
        image: ``(H, W, 3)`` uint8 RGB.
        fg, bg: ``(H, W)`` bool firm foreground / background; box: ``(4,)`` XYXY or ``None``.
        superpixels: optional ``(H, W)`` int map to use instead of computing Felzenszwalb's.
    """
    from skimage.segmentation import felzenszwalb

    fg = fg.astype(bool)
    if superpixels is None:
        superpixels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    keep = snap_to_superpixels(fg, np.asarray(superpixels), threshold)
    return _apply_firm(keep, fg, box, bg)


@hookimpl
def register_evidence(register: Any) -> None:
    register(EvidenceMethod("superpixel-snap", superpixel_snap,
                            "snap the mined segment to Felzenszwalb superpixels"))
    register(EvidenceMethod("none", no_refine, "keep the mined segment as it is"))
