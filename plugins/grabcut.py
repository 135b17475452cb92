"""``grabcut`` evidence: re-estimate a mined segment with OpenCV's GrabCut (paper Sec. 3.4).

As the paper does (docs/method.md), GrabCut is initialised from a mask, not only a box: the mined
segment is firm foreground, everything outside its box firm background, the rest of the box
probable background, so GrabCut grows the segment to the object's colour boundary. The image is
downscaled to ``max_side`` (400) for speed, 5 iterations; firm pixels keep their label at full
resolution. By default it runs on the box grown by its own size on every side (``context``),
not the whole image: nothing outside the box can change, and the margin's firm background gives
the background colour model (on the demo's images 2x faster; ``context=0`` is the full image).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from jtsm.hookspecs import hookimpl
from jtsm.plugins import EvidenceMethod


def grabcut_refine(
    image: np.ndarray,
    fg: np.ndarray,
    box: np.ndarray | None,
    bg: np.ndarray | None,
    *,
    iterations: int = 5,
    max_side: int = 400,
    seed: int = 0,
    context: float = 1.0,
    **_: Any,
) -> np.ndarray:
    """Re-estimate a mask with GrabCut.

    Arguments:
        image: ``(H, W, 3)`` uint8 RGB.
        fg: ``(H, W)`` bool firm foreground (the mined segment).
        box: ``(4,)`` XYXY box; pixels outside it are background. ``None``: the box of ``fg``.
        bg: ``(H, W)`` bool extra firm background, or ``None``.
        context: GrabCut runs on the box grown by this fraction of its size on every side
            (at least 8 px): the firm background there gives the background colour model,
            and nothing beyond can change. ``0`` or less: the whole image (slower; the
            authors' code).
    Returns:
        ``(H, W)`` bool mask; ``fg`` pixels are always in it, ``bg`` pixels never.
    """
    h, w = fg.shape
    fg = fg.astype(bool)
    if not fg.any():
        return fg.copy()
    if box is None:
        ys, xs = np.nonzero(fg)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    firm_bg = np.ones((h, w), bool)
    firm_bg[y0:y1, x0:x1] = False
    if bg is not None:
        firm_bg |= bg.astype(bool)
    firm_bg &= ~fg
    if (x1 - x0) * (y1 - y0) < 9:  # too small to model: the box itself (authors' code)
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = True
        return (out | fg) & ~firm_bg
    if context > 0:  # crop: outside the box every pixel is firm background anyway
        mx = max(8, int(round(context * (x1 - x0))))
        my = max(8, int(round(context * (y1 - y0))))
        cx0, cy0, cx1, cy1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, w), min(y1 + my, h)
        if (cx0, cy0, cx1, cy1) != (0, 0, w, h):
            out = np.zeros((h, w), bool)
            out[cy0:cy1, cx0:cx1] = grabcut_refine(
                image[cy0:cy1, cx0:cx1], fg[cy0:cy1, cx0:cx1],
                np.array([x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0], np.float32),
                None if bg is None else bg[cy0:cy1, cx0:cx1], iterations=iterations,
                max_side=max_side, seed=seed, context=0.0)
            return out | fg
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    mask[firm_bg] = cv2.GC_BGD
    mask[fg] = cv2.GC_FGD
    if not (mask != cv2.GC_FGD).any():
        return fg.copy()  # nothing left to decide
    scale = min(1.0, max_side / max(h, w))
    img_s = image
    mask_s = mask
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img_s = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask_s = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    if not np.isin(mask_s, (cv2.GC_BGD, cv2.GC_PR_BGD)).any() or not np.isin(
        mask_s, (cv2.GC_FGD, cv2.GC_PR_FGD)
    ).any():
        return fg.copy()
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(seed)
    bgr = cv2.cvtColor(np.ascontiguousarray(img_s), cv2.COLOR_RGB2BGR)
    try:
        cv2.grabCut(bgr, mask_s, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return fg.copy()  # degenerate colour model (e.g. a constant image): keep the seed
    out = np.isin(mask_s, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    if scale < 1.0:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_NEAREST)
    return (out.astype(bool) | fg) & ~firm_bg


@hookimpl
def register_evidence(register: Any) -> None:
    register(EvidenceMethod("grabcut", grabcut_refine,
                            "GrabCut from the mined mask (firm fg) and its box (paper Sec. 3.4)"))
