"""Proposal pooling selectable by config: ``moi`` (default), ``moi-tps``, ``roi-pool``,
``roi-align`` (paper Table 1).

``roi-pool`` and ``roi-align`` are ``torchvision.ops.roi_pool`` / ``roi_align`` on the
proposals' boxes (:mod:`jtsm.ops.roi_pool`, :mod:`jtsm.ops.roi_align`); ``moi`` uses RoIPool's
bins, so with ``compensation="none"`` a rectangle segment pools exactly as ``roi-pool``."""

from __future__ import annotations

import typing

import torch
from torch import Tensor, nn

from jtsm.config import Compensation, Pooling
from jtsm.errors import ConfigError
from jtsm.ops.moi_pool import moi_pool
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool
from jtsm.ops.tps import moi_tps_pool

__all__ = ["FRAME_CELLS", "POOLERS", "ProposalPooler", "build_pooler", "frame_pool"]

POOLERS: tuple[str, ...] = typing.get_args(Pooling)  # declared in jtsm.config


class ProposalPooler(nn.Module):
    """Pool one image's proposals: ``(1, C, h_f, w_f)`` features -> ``(P, C, ph, pw)``.

    Arguments:
        method: one of :data:`POOLERS`.
        compensation: MoIPool's compensation term (``"code"``, ``"paper"``, ``"none"``),
            ``moi`` only.
        sampling_ratio, aligned: RoIAlign / TPS sampling.
    """

    def __init__(
        self,
        method: str = "moi",
        output_size: int = 7,
        spatial_scale: float = 1.0 / 16,
        compensation: Compensation = "code",
        use_scores: bool = True,
        sampling_ratio: int = 2,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        if method not in POOLERS:
            raise ConfigError(f"unknown pooling {method!r}; choose from {', '.join(POOLERS)}")
        self.method = method
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.compensation = compensation
        self.use_scores = use_scores
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features: Tensor, proposals: ProposalTensors) -> Tensor:
        s, k = self.spatial_scale, self.output_size
        boxes = proposals.boxes.to(features.dtype)
        if self.method == "moi":
            return moi_pool(features, proposals, k, s, self.compensation, self.use_scores)
        if self.method == "moi-tps":
            return moi_tps_pool(features, proposals, k, s, self.sampling_ratio, self.aligned)
        if self.method == "roi-pool":
            return roi_pool(features, boxes, k, s)
        return roi_align(features, boxes, k, s, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return f"method={self.method}, output_size={self.output_size}, scale={self.spatial_scale}"


def build_pooler(method: str = "moi", **kwargs) -> ProposalPooler:  # noqa: ANN003
    """Factory: ``build_pooler("roi-align", output_size=7, spatial_scale=1/16)``."""
    return ProposalPooler(method, **kwargs)


#: the frame's width in grid cells on each side of the box (of ``output_size`` cells)
FRAME_CELLS = 2


def frame_pool(features: Tensor, boxes: Tensor, output_size: int, spatial_scale: float,
               ring: int = FRAME_CELLS) -> Tensor:
    """The features of the frame around each box (ContextLocNet's frame pooling, Kantorov et
    al. ECCV 2016): RoIAlign over the box grown so that the box itself fills the middle
    ``output_size - 2 * ring`` cells of the grid, those cells set to zero.

    With the default 7 cells the box is grown 7/3 times about its centre and the frame is
    the outer ring of 2 cells.

    Arguments:
        features: ``(1, C, h, w)``; boxes ``(P, 4)`` XYXY in pixels.
    Returns:
        ``(P, C, output_size, output_size)`` in the features' dtype.
    """
    inner = output_size - 2 * ring
    if inner < 1:
        raise ValueError(f"a frame of {ring} cells needs a grid of more than {2 * ring} cells")
    boxes = boxes.to(features.dtype)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * (output_size / inner)
    pooled = roi_align(features, torch.cat([centre - half, centre + half], 1), output_size,
                       spatial_scale)
    keep = torch.ones(output_size, output_size, dtype=pooled.dtype, device=pooled.device)
    keep[ring:ring + inner, ring:ring + inner] = 0
    return pooled * keep
