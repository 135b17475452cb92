"""The mining model: backbone -> proposal pooling -> mining head (MIL + refinement).

What the ``mine`` stage trains. One image per forward (the paper uses 1 image per GPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from jtsm.modeling.backbone import build_backbone
from jtsm.modeling.criterion import MiningCriterion
from jtsm.modeling.imagenet_weights import resolve_weights
from jtsm.modeling.mining_head import MiningHead
from jtsm.modeling.pooling import build_pooler
from jtsm.modeling.precision import run_module
from jtsm.ops.proposal_tensors import ProposalTensors

__all__ = ["MiningModel"]

if TYPE_CHECKING:
    from jtsm.config import Config

# ImageNet statistics in 0..255 RGB (torchvision's, scaled)
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class MiningModel(nn.Module):
    """Backbone + pooler + :class:`MiningHead` (paper Sec. 3.2-3.3).

    ``forward(image, proposals)`` takes ``image`` ``(1, 3, H, W)`` float RGB in ``0..255``
    and the image's :class:`ProposalTensors` (superpixel map of size ``H x W``), and returns
    the head's dict (``mil_scores`` ``(P, C)``, ``image_scores`` ``(C,)``, ``refine_logits``,
    ``refine_probs``, ``scores``). ``losses(outputs, tags, proposals)`` gives ``loss_mil`` and
    ``loss_refine_r`` per head (Eq. 4 is their sum).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        pooling: str = "moi",
        pool_size: int = 7,
        compensation: str = "code",
        use_scores: bool = True,
        fc_dim: int = 256,
        dropout: float = 0.5,
        oicr_heads: int = 4,
        oicr_overlap: str = "box",
        oicr_iou_threshold: float = 0.5,
        stuff_seeds: int = 1,
        num_things: int | None = None,
        precision: str = "fp32",
        mil_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.precision = precision  # the backbone's: fp32 | bf16 | auto (modeling.precision)
        self.oicr_overlap = oicr_overlap  # box | mask: the overlap OICR spreads pseudo labels by
        self.oicr_iou_threshold = oicr_iou_threshold
        self.stuff_seeds = stuff_seeds  # OICR pseudo ground truths per stuff class
        # classes 0 .. num_things - 1 are things, the rest stuff; None: unknown (no stuff seeds)
        self.num_things = num_things
        self.mil_eps = mil_eps
        self.pooler = build_pooler(pooling, output_size=pool_size,
                                   spatial_scale=1.0 / backbone.stride,
                                   compensation=compensation, use_scores=use_scores)
        in_features = backbone.out_channels * pool_size**2
        self.head = MiningHead(in_features, num_classes, fc_dim, oicr_heads, dropout)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: Config, num_classes: int, pretrained: bool = True,
                    num_things: int | None = None) -> MiningModel:
        """The mining model ``cfg.backbone`` and ``cfg.mining`` describe, over
        ``num_classes`` (``num_things`` things, then stuff); ``pretrained=False`` skips
        reading the backbone's ImageNet weights (see :func:`backbone_from_config`)."""
        return cls(backbone_from_config(cfg, pretrained), num_classes, num_things=num_things,
                   **mining_kwargs(cfg))

    def forward(self, image: Tensor, proposals: ProposalTensors) -> dict[str, Any]:
        if image.dim() != 4 or image.shape[0] != 1:
            raise ValueError(f"image must be (1, 3, H, W), got {tuple(image.shape)}")
        if tuple(image.shape[2:]) != proposals.image_size:
            raise ValueError(
                f"image is {tuple(image.shape[2:])} but proposals are {proposals.image_size}"
            )
        return self.mine(self.features(image), proposals)

    def features(self, image: Tensor) -> Tensor:
        """Backbone features ``(N, C_feat, H/stride, W/stride)`` float32 of ``(N, 3, H, W)``
        0..255 (computed in ``self.precision``)."""
        return run_module(self.backbone, (image - self.pixel_mean) / self.pixel_std,
                          self.precision)

    def mine(self, feats: Tensor, proposals: ProposalTensors) -> dict[str, Any]:
        """The mining head's outputs (float32) for one image's features ``(1, C_feat, h, w)``:
        pooled in the features' dtype, the head's linear layers in ``self.precision``.

        MoIPool plans host proposals on the host (no host synchronisation on a GPU,
        :mod:`jtsm.ops.moi_pool`); the other poolers take them on the features' device."""
        if self.pooler.method != "moi" and proposals.device != feats.device:
            proposals = proposals.to(feats.device)
        return self.head(self.pooler(feats, proposals), self.precision)

    def losses(
        self, outputs: dict[str, Any], tags: Tensor, proposals: ProposalTensors
    ) -> dict[str, Tensor]:
        """MIL loss (Eq. 2) and one refinement loss per head (Eq. 3); ``tags`` ``(C,)`` 0/1:
        :class:`jtsm.modeling.criterion.MiningCriterion` with this model's settings (what
        ``jtsm mine`` trains with)."""
        return MiningCriterion(self.oicr_overlap, self.oicr_iou_threshold, self.mil_eps,
                               stuff_seeds=self.stuff_seeds,
                               num_things=self.num_things)(outputs, tags, proposals)


def backbone_from_config(cfg: Config, pretrained: bool = True) -> nn.Module:
    """The backbone ``cfg.backbone`` describes.

    ``norm`` / ``freeze_at`` ``auto`` follow ``backbone.weights`` being set (frozen BN and
    stages up to res2 frozen with pretrained weights), whether or not they are loaded:
    ``pretrained=False`` builds the same modules without reading the weights (a run whose
    trained weights are loaded next needs no ImageNet file, nor a network).
    """
    b = cfg.backbone
    has_weights = bool(b.weights.strip())
    norm = b.norm if b.norm != "auto" else ("frozen_bn" if has_weights else None)
    freeze_at = b.freeze_at if b.freeze_at >= 0 else (2 if has_weights else 0)
    file = resolve_weights(b.weights, b.name) if pretrained and has_weights else None
    return build_backbone(b.name, file, norm, freeze_at, b.stride, b.width)


def mining_kwargs(cfg: Config) -> dict[str, Any]:
    """:class:`MiningModel`'s keyword arguments from ``cfg.mining`` and ``cfg.backbone``."""
    m = cfg.mining
    return {"pooling": m.pooling, "pool_size": m.pool_size, "compensation": m.compensation,
            "use_scores": m.use_scores, "fc_dim": m.fc_dim, "dropout": m.dropout,
            "oicr_heads": m.oicr_heads, "oicr_overlap": m.oicr_overlap,
            "oicr_iou_threshold": m.oicr_iou_threshold, "stuff_seeds": m.stuff_seeds,
            "precision": cfg.backbone.precision}
