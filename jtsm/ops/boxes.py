"""Box conventions shared by the pooling ops and the refinement heads.

jtsm's boxes (:mod:`jtsm.structures`) are ``float`` XYXY in image pixels with an exclusive
right/bottom edge: ``[x0, y0, x1, y1]`` covers columns ``x0 .. x1-1``. That is also the
continuous box RoIAlign and ``torchvision.ops.box_iou`` expect. RoIPool (Fast R-CNN,
``torchvision.ops.roi_pool``) instead reads a box as the *pixel indices* of its first and last
column and row, both inclusive; :func:`inclusive_boxes` converts.

:func:`roi_pool_bins` reproduces ``torchvision.ops.roi_pool``'s sub-windows exactly, including
its floating-point arithmetic in the features' precision, so MoIPool shares RoIPool's bins.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor

__all__ = ["box_area", "box_iou", "inclusive_boxes", "round_half_away", "roi_pool_bins"]


def box_area(boxes: Tensor) -> Tensor:
    """``(N, 4)`` boxes -> ``(N,)`` areas (0 for empty boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """``torchvision.ops.box_iou`` ``(N, M)``, with 0 where both boxes are empty.

    An empty proposal has the box ``[0, 0, 0, 0]``; torchvision divides 0 by 0 there, and a NaN
    overlap would compare false against every threshold instead of meaning "no overlap".
    """
    return torchvision.ops.box_iou(a, b).nan_to_num_(0.0)


def inclusive_boxes(boxes: Tensor) -> Tensor:
    """Exclusive-edge boxes ``(N, 4)`` -> RoIPool's inclusive pixel boxes
    ``[x0, y0, x1-1, y1-1]`` (no constant tensor built from Python data: on a GPU that copy
    would block)."""
    return torch.cat([boxes[:, :2], boxes[:, 2:] - 1], 1)


def round_half_away(x: Tensor) -> Tensor:
    """C's ``round``: to the nearest integer, halves away from zero (``torch.round`` rounds
    halves to even)."""
    frac = x - torch.floor(x)
    return torch.where(frac == 0.5, x + 0.5 * torch.sign(x), torch.round(x))


def roi_pool_bins(
    boxes: Tensor, spatial_scale: float, ph: int, pw: int, height: int, width: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``torchvision.ops.roi_pool``'s bins of inclusive pixel boxes on an ``height x width`` map.

    Per box (torchvision's kernel, in ``dtype`` arithmetic as it computes in the features'
    type): ``start = round(x0 * scale)``, ``end = round(x1 * scale)`` (both inclusive),
    ``n = max(end - start + 1, 1)`` cells, bin ``v`` covers
    ``[start + floor(v * n / pw), start + ceil((v + 1) * n / pw))`` with ``n / pw`` a
    ``dtype`` division, clipped to ``[0, width)``; rows alike.

    Arguments:
        boxes: ``(N, 4)`` inclusive XYXY pixel boxes (:func:`inclusive_boxes`).
    Returns:
        ``lo_r, hi_r`` ``(N, ph)`` and ``lo_c, hi_c`` ``(N, pw)`` int64, ``hi <= lo`` for an
        empty bin.
    """
    b = boxes.to(dtype) * torch.tensor(spatial_scale, dtype=dtype)
    cb = round_half_away(b).long()

    def axis(start: Tensor, end: Tensor, bins: int, limit: int) -> tuple[Tensor, Tensor]:
        n = (end - start + 1).clamp(min=1).to(dtype)
        size = n / bins
        u = torch.arange(bins, device=boxes.device, dtype=dtype)
        lo = torch.floor(u[None, :] * size[:, None]).long() + start[:, None]
        hi = torch.ceil((u[None, :] + 1) * size[:, None]).long() + start[:, None]
        return lo.clamp(0, limit), hi.clamp(0, limit)

    lo_r, hi_r = axis(cb[:, 1], cb[:, 3], ph, height)
    lo_c, hi_c = axis(cb[:, 0], cb[:, 2], pw, width)
    return lo_r, hi_r, lo_c, hi_c
