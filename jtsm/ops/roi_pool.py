"""RoIPool (baseline of paper Table 1): ``torchvision.ops.roi_pool`` on jtsm's boxes.

jtsm's boxes have an exclusive right/bottom edge; RoIPool reads a box as the inclusive pixel
indices of its first and last column and row, so the box passed on is
``[x0, y0, x1 - 1, y1 - 1]`` (:func:`jtsm.ops.boxes.inclusive_boxes`): the cells pooled are
exactly those a segment filling the box turns on in MoIPool.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor

from jtsm.ops.boxes import inclusive_boxes

__all__ = ["roi_pool", "as_rois"]


def as_rois(boxes: Tensor, batch: int) -> Tensor:
    """``(K, 4)`` boxes of image 0 or ``(K, 5)`` ``[batch_index, x0, y0, x1, y1]`` -> ``(K, 5)``."""
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
) -> Tensor:
    """RoIPool of exclusive-edge pixel boxes.

    Arguments:
        features: ``(N, C, h_f, w_f)``.
        boxes: ``(K, 4)`` boxes of image 0, or ``(K, 5)`` with the batch index first; pixels,
            XYXY, exclusive right/bottom edge.
    Returns:
        ``(K, C, ph, pw)``.
    """
    rois = as_rois(boxes.to(features.dtype), features.shape[0])
    rois = torch.cat([rois[:, :1], inclusive_boxes(rois[:, 1:])], 1)
    return torchvision.ops.roi_pool(features, rois, output_size, spatial_scale)
