"""Pictures a person can judge at a glance: ``image | prediction | ground truth`` panels.

Each segment is painted in its class's colour (things: a per-instance shade of it) over the
image, with white segment boundaries; void stays the plain image.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from jtsm.fileio import write_png
from jtsm.structures import PanopticSeg

__all__ = ["class_colour", "colourise", "write_panel"]


def class_colour(category_id: int) -> np.ndarray:
    """A fixed, well-spread RGB colour for a category id (golden-angle hues)."""
    hue = int((category_id * 137.508) % 180)
    hsv = np.array([[[hue, 200, 230]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def colourise(image: np.ndarray, seg: PanopticSeg, alpha: float = 0.55) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``image`` with the segments of ``seg`` painted over it."""
    out = image.astype(np.float32).copy()
    for k, s in enumerate(seg.segments):
        m = seg.ids == int(s["id"])
        # each segment a shade of its class's colour, so touching instances stay apart
        shade = 0.7 + 0.3 * ((k * 7919) % 5) / 4
        colour = np.clip(class_colour(int(s["category_id"])) * shade, 0, 255)
        out[m] = (1 - alpha) * out[m] + alpha * colour
    ids = seg.ids
    edge = np.zeros(ids.shape, bool)
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    out[edge & (ids != 0)] = 255
    return out.astype(np.uint8)


def write_panel(path: str | os.PathLike[str], image: np.ndarray, pred: PanopticSeg,
                gt: PanopticSeg | None = None) -> None:
    """Write ``image | prediction | ground truth`` (the last when given) side by side."""
    parts = [image, colourise(image, pred)]
    if gt is not None and gt.image_size == pred.image_size:
        parts.append(colourise(image, gt))
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    row = [parts[0]]
    for p in parts[1:]:
        row += [gap, p]
    write_png(path, np.concatenate(row, 1))
