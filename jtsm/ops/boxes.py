"""Box utilities shared by the pooling ops and the refinement heads.

Boxes are ``float`` XYXY in image pixels with an exclusive right/bottom edge (as in
:mod:`jtsm.structures`): ``[x0, y0, x1, y1]`` covers columns ``x0 .. x1-1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["box_area", "box_iou", "cell_boxes", "bin_ranges"]


def box_area(boxes: Tensor) -> Tensor:
    """``(N, 4)`` boxes -> ``(N,)`` areas (0 for empty boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU ``(N, M)`` of ``(N, 4)`` and ``(M, 4)`` boxes; 0 where the union is empty."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def cell_boxes(boxes: Tensor, spatial_scale: float) -> Tensor:
    """RoIPool's rounded boxes on the feature map: ``(N, 4)`` -> ``(N, 4)`` int64 cell XYXY.

    ``c0 = round(x0 * scale)``, ``c1 = max(round(x1 * scale), c0 + 1)`` with round half up,
    exclusive right edge. Not clipped: bins outside the map come out empty.
    """
    cb = torch.floor(boxes.double() * spatial_scale + 0.5).long()
    cb[:, 2] = torch.maximum(cb[:, 2], cb[:, 0] + 1)
    cb[:, 3] = torch.maximum(cb[:, 3], cb[:, 1] + 1)
    return cb


def bin_ranges(start: Tensor, length: Tensor, bins: int, limit: int) -> tuple[Tensor, Tensor]:
    """RoIPool sub-windows along one axis (Eq. 5), in exact integer arithmetic.

    Bin ``u`` of a box starting at ``start`` with ``length`` cells covers
    ``[start + floor(length*u/bins), start + ceil(length*(u+1)/bins))``, clipped to
    ``[0, limit)``.

    Arguments:
        start, length: ``(N,)`` int64.
    Returns:
        ``lo, hi``: ``(N, bins)`` int64, ``hi <= lo`` for an empty bin.
    """
    u = torch.arange(bins, device=start.device)
    lo = start[:, None] + torch.div(length[:, None] * u, bins, rounding_mode="floor")
    hi = start[:, None] - torch.div(-length[:, None] * (u + 1), bins, rounding_mode="floor")
    return lo.clamp(0, limit), hi.clamp(0, limit)
