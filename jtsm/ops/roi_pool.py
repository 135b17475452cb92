"""RoIPool in pure torch (baseline of paper Table 1).

Bins over the rounded box (:func:`jtsm.ops.boxes.cell_boxes`), ``[floor, ceil)`` sub-windows
in exact integer arithmetic (Eq. 5 without the mask), max per bin, 0 for an empty bin, argmax
gradients. It shares its core with MoIPool, so a rectangle segment pools identically.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jtsm.ops.binned_max import BinPlan, binned_max, rect_bin_cells
from jtsm.ops.boxes import bin_ranges, cell_boxes

__all__ = ["roi_pool", "split_boxes"]


def split_boxes(boxes: Tensor, batch: int) -> Tensor:
    """``(K, 4)`` (image 0) or ``(K, 5)`` ``[batch_index, x0, y0, x1, y1]`` -> ``(K, 5)``."""
    if boxes.dim() != 2 or boxes.shape[1] not in (4, 5):
        raise ValueError(f"boxes must be (K, 4) or (K, 5), got {tuple(boxes.shape)}")
    if boxes.shape[1] == 4:
        if batch != 1:
            raise ValueError("(K, 4) boxes need a batch of one image; pass (K, 5) boxes")
        boxes = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], 1)
    return boxes


def roi_pool(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int] = 7,
    spatial_scale: float = 1.0 / 16,
    chunk: int = 512,
) -> Tensor:
    """RoIPool.

    Arguments:
        features: ``(N, C, h_f, w_f)``.
        boxes: ``(K, 4)`` boxes of image 0, or ``(K, 5)`` with the batch index first; pixels,
            XYXY, exclusive right/bottom edge.
    Returns:
        ``(K, C, ph, pw)``.
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, hf, wf = features.shape
    boxes = split_boxes(boxes, n)
    k = boxes.shape[0]
    dev = features.device
    plan = BinPlan(k * ph * pw)
    bidx = boxes[:, 0].long()
    cboxes = cell_boxes(boxes[:, 1:], spatial_scale)
    for a in range(0, k, chunk):
        b = min(a + chunk, k)
        cb = cboxes[a:b]
        lo_r, hi_r = bin_ranges(cb[:, 1], cb[:, 3] - cb[:, 1], ph, hf)
        lo_c, hi_c = bin_ranges(cb[:, 0], cb[:, 2] - cb[:, 0], pw, wf)
        cells, entry_bin, counts = rect_bin_cells(lo_r, hi_r, lo_c, hi_c, wf)
        cells = cells + bidx[a:b][torch.div(entry_bin, ph * pw, rounding_mode="floor")] * hf * wf
        plan.extend(a * ph * pw + torch.arange((b - a) * ph * pw, device=dev), cells, counts)
    table = features.permute(0, 2, 3, 1).reshape(n * hf * wf, c)
    return binned_max(table, plan).view(k, ph, pw, c).permute(0, 3, 1, 2)
