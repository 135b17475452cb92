"""Pictures of proposals: a grid of the top-ranked masks over the image."""

from __future__ import annotations

import os

import cv2
import numpy as np

from jtsm.fileio import write_png
from jtsm.structures import ProposalSet

__all__ = ["draw_top_proposals", "write_top_proposals"]


def draw_top_proposals(
    image: np.ndarray, ps: ProposalSet, n: int = 12, cols: int = 4, tile: int = 256
) -> np.ndarray:
    """RGB ``uint8`` grid of the ``n`` best proposals: outside dimmed, mask tinted, outlined.

    Arguments:
        image: RGB ``uint8`` ``(H, W, 3)``, the image ``ps`` belongs to.
        ps: its proposals.
        n, cols: number of tiles and tiles per row.
        tile: long side of a tile in pixels.

    Returns:
        ``(rows * th, cols * tw, 3)`` uint8.
    """
    h, w = image.shape[:2]
    s = tile / max(h, w)
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
    top = ps.topk(n)
    k = len(top)
    rows = max(1, -(-k // cols))
    grid = np.full((rows * th, cols * tw, 3), 255, np.uint8)
    colour = np.array([255, 64, 32], np.float32)
    for i in range(k):
        m = cv2.resize(top.mask(i).astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST)
        mb = m.astype(bool)
        out = small.astype(np.float32)
        out[~mb] *= 0.3
        out[mb] = 0.6 * out[mb] + 0.4 * colour
        out = out.astype(np.uint8)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 0), 1)
        label = f"#{i + 1} {float(top.scores[i]):.2f}"
        cv2.putText(out, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        r, c = divmod(i, cols)
        grid[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = out
    return grid


def write_top_proposals(
    path: str | os.PathLike[str], image: np.ndarray, ps: ProposalSet, n: int = 12
) -> None:
    """Write :func:`draw_top_proposals` as a PNG (atomically)."""
    write_png(path, draw_top_proposals(image, ps, n))
