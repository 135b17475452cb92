"""The mining model: backbone -> proposal pooling -> mining head (MIL + refinement).

What the ``mine`` stage trains. One image per forward (the paper uses 1 image per GPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from jtsm.modeling.backbone import build_backbone
from jtsm.modeling.losses import mil_loss, refinement_loss, refinement_targets
from jtsm.modeling.mining import MiningHead
from jtsm.modeling.pooling import build_pooler
from jtsm.modeling.precision import run_module
from jtsm.ops.boxes import box_iou
from jtsm.ops.proposal_tensors import ProposalTensors

__all__ = ["MiningConfig", "MiningModel"]

# ImageNet statistics in 0..255 RGB (torchvision's, scaled)
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass
class MiningConfig:
    """Hyper-parameters of :class:`MiningModel`; defaults are the CPU preset."""

    num_classes: int = 21
    backbone: str = "tiny"
    weights: str | None = None
    norm: str | None = None
    freeze_at: int | None = None
    stride: int = 16
    width: int = 32  # tiny backbone only
    pooler: str = "moi"
    pool_size: int = 7
    compensation: str = "code"
    use_scores: bool = True
    hidden: int = 256
    dropout: float = 0.5
    num_refine: int = 4
    refine_iou: float = 0.5
    refine_overlap: str = "box"  # or "mask"
    mil_eps: float = 1e-6
    mil_reduction: str = "sum"
    precision: str = "fp32"  # the backbone's: fp32 | bf16 | auto (jtsm.modeling.precision)

    @classmethod
    def paper(cls, num_classes: int = 21, weights: str | None = None) -> MiningConfig:
        """The paper's VOC setting: ResNet18-WS, FC 4096, 4 refinement heads."""
        return cls(num_classes=num_classes, backbone="resnet18-ws", weights=weights, hidden=4096)

    @classmethod
    def cpu(cls, num_classes: int = 21) -> MiningConfig:
        """Small and fast: TinyNet (stride 16), FC 256."""
        return cls(num_classes=num_classes)


class MiningModel(nn.Module):
    """Backbone + pooler + :class:`MiningHead` (paper Sec. 3.2-3.3).

    ``forward(image, proposals)`` takes ``image`` ``(1, 3, H, W)`` float RGB in ``0..255``
    and the image's :class:`ProposalTensors` (superpixel map of size ``H x W``), and returns
    the head's dict (``mil_scores`` ``(P, C)``, ``image_scores`` ``(C,)``, ``refine_logits``,
    ``refine_probs``, ``scores``). ``losses(outputs, tags, proposals)`` gives ``loss_mil`` and
    ``loss_refine_r`` per head (Eq. 4 is their sum).
    """

    def __init__(self, cfg: MiningConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone, cfg.weights, cfg.norm, cfg.freeze_at,
                                       cfg.stride, cfg.width)
        stride = self.backbone.stride
        self.pooler = build_pooler(cfg.pooler, output_size=cfg.pool_size,
                                   spatial_scale=1.0 / stride, compensation=cfg.compensation,
                                   use_scores=cfg.use_scores)
        in_features = self.backbone.out_channels * cfg.pool_size**2
        self.head = MiningHead(in_features, cfg.num_classes, cfg.hidden, cfg.num_refine,
                               cfg.dropout)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: MiningConfig | dict[str, Any]) -> MiningModel:
        return cls(cfg if isinstance(cfg, MiningConfig) else MiningConfig(**cfg))

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)

    def forward(self, image: Tensor, proposals: ProposalTensors) -> dict[str, Any]:
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"image must be (1, 3, H, W), got {tuple(image.shape)}")
        if tuple(image.shape[2:]) != proposals.image_size:
            raise ValueError(
                f"image is {tuple(image.shape[2:])} but proposals are {proposals.image_size}"
            )
        if proposals.device != image.device:
            proposals = proposals.to(image.device)
        return self.mine(self.features(image), proposals)

    def features(self, image: Tensor) -> Tensor:
        """Backbone features ``(N, C_feat, H/stride, W/stride)`` float32 of ``(N, 3, H, W)``
        0..255 (computed in ``cfg.precision``)."""
        return run_module(self.backbone, (image - self.pixel_mean) / self.pixel_std,
                          self.cfg.precision)

    def mine(self, feats: Tensor, proposals: ProposalTensors) -> dict[str, Any]:
        """The mining head's outputs for one image's features ``(1, C_feat, h, w)``."""
        return self.head(self.pooler(feats, proposals))

    def losses(
        self, outputs: dict[str, Any], tags: Tensor, proposals: ProposalTensors
    ) -> dict[str, Tensor]:
        """MIL loss (Eq. 2) and one refinement loss per head (Eq. 3); ``tags`` ``(C,)`` 0/1."""
        tags = tags.to(outputs["image_scores"].device)
        if proposals.device != tags.device:
            proposals = proposals.to(tags.device)
        out = {"loss_mil": mil_loss(outputs["image_scores"], tags, self.cfg.mil_eps,
                                    self.cfg.mil_reduction)}
        if self.cfg.refine_overlap == "mask":
            def overlap(idx: Tensor) -> Tensor:
                return proposals.mask_iou(idx).to(outputs["mil_scores"].dtype)
        else:
            boxes = proposals.boxes.to(outputs["mil_scores"].device)

            def overlap(idx: Tensor) -> Tensor:
                return box_iou(boxes, boxes[idx])

        prev = outputs["mil_scores"].detach()
        for r, (logits, probs) in enumerate(zip(outputs["refine_logits"],
                                                outputs["refine_probs"])):
            labels, weights = refinement_targets(prev, tags, overlap, self.cfg.refine_iou)
            out[f"loss_refine_{r + 1}"] = refinement_loss(logits, labels, weights)
            prev = probs.detach()
        return out
