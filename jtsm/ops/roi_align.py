"""RoIAlign (baseline of paper Table 1; the mask head's features): ``torchvision.ops.roi_align``.

jtsm's exclusive right edge *is* the continuous right edge RoIAlign takes, so boxes pass
unchanged; this wrapper only accepts ``(K, 4)`` boxes of a one-image batch and sets jtsm's
defaults (2 samples per bin and axis, ``aligned=True``).
"""

from __future__ import annotations

import torchvision
from torch import Tensor

from jtsm.ops.roi_pool import as_rois

__all__ = ["roi_align"]


def roi_align(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int] = 7,
    spatial_scale: float = 1.0 / 16,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign.

    Arguments:
        features: ``(N, C, h_f, w_f)``.
        boxes: ``(K, 4)`` boxes of image 0 or ``(K, 5)`` with the batch index first (pixels).
        sampling_ratio: samples per bin and axis; ``<= 0`` for adaptive.
        aligned: shift the box by -0.5 cell (pixel-exact, detectron2's ROIAlignV2).
    Returns:
        ``(K, C, ph, pw)``.
    """
    rois = as_rois(boxes.to(features.dtype), features.shape[0])
    return torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio,
                                     aligned)
