"""Proposal pooling selectable by config: ``moi`` (default), ``moi-tps``, ``roi-pool``,
``roi-align`` (paper Table 1).

``roi-pool`` and ``roi-align`` are ``torchvision.ops.roi_pool`` / ``roi_align`` on the
proposals' boxes (:mod:`jtsm.ops.roi_pool`, :mod:`jtsm.ops.roi_align`); ``moi`` uses RoIPool's
bins, so with ``compensation="none"`` a rectangle segment pools exactly as ``roi-pool``."""

from __future__ import annotations

import typing

from torch import Tensor, nn

from jtsm.config import Compensation, Pooling
from jtsm.errors import ConfigError
from jtsm.ops.moi_pool import moi_pool
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool
from jtsm.ops.tps import moi_tps_pool

__all__ = ["POOLERS", "ProposalPooler", "build_pooler"]

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
