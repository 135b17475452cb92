"""The full JTSM model: the mining branch plus the instance and semantic branches (Fig. 2).

All three branches read the same backbone features. ``forward(image, proposals)`` returns the
mining branch's outputs (so proposal scoring works as for a :class:`MiningModel`); the
refinement branches are called on the features: :meth:`PanopticModel.mask_logits` on boxes and
:meth:`PanopticModel.semantic_logits` on the whole map. Their conv heads run in the backbone's
``precision`` (:mod:`jtsm.modeling.precision`); their logits are float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jtsm.modeling.heads import MaskHead, SemanticHead
from jtsm.modeling.model import MiningModel, backbone_from_config, mining_kwargs
from jtsm.modeling.precision import run_module
from jtsm.ops.roi_align import roi_align

__all__ = ["PanopticModel"]

if TYPE_CHECKING:
    from jtsm.config import Config


class PanopticModel(MiningModel):
    """:class:`MiningModel` + :class:`MaskHead` (things) + :class:`SemanticHead` (stuff).

    Arguments:
        backbone, num_classes, mining: the mining branch (:class:`MiningModel`'s arguments;
            ``num_classes`` = things + stuff).
        num_things: thing classes (the first ``num_things`` of the ``num_classes``).
        mask_size: RoIAlign output ``S``; masks come out at ``2S``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, num_things: int, *,
                 mask_size: int = 14, mask_channels: int = 256, mask_convs: int = 4,
                 semantic_channels: int = 256, semantic_convs: int = 2,
                 **mining: object) -> None:
        super().__init__(backbone, num_classes, num_things=num_things,  # type: ignore[arg-type]
                         **mining)
        self.num_stuff = num_classes - num_things
        self.mask_size = mask_size
        c = self.backbone.out_channels
        # the instance branch also sees the image's own pixels in the box: backbone features
        # are stride 8-16, too coarse alone for the contour of a small object
        self.mask_head = MaskHead(c + 3, num_things, mask_channels, mask_convs)
        self.semantic_head = SemanticHead(c, self.num_stuff, semantic_channels, semantic_convs)

    @classmethod
    def from_config(cls, cfg: Config, num_classes: int,  # type: ignore[override]
                    num_things: int = 0, pretrained: bool = True) -> PanopticModel:
        """The full model ``cfg`` describes (the mining branch as :class:`MiningModel`
        builds it, the branches of ``cfg.refine``)."""
        r = cfg.refine
        return cls(backbone_from_config(cfg, pretrained), num_classes, num_things,
                   mask_size=r.mask_size, mask_channels=r.mask_channels,
                   mask_convs=r.mask_convs, semantic_channels=r.semantic_channels,
                   semantic_convs=r.semantic_convs, **mining_kwargs(cfg))

    def mask_logits(self, feats: Tensor, boxes: Tensor, image: Tensor) -> Tensor:
        """``(K, num_things, 2S, 2S)`` mask logits of ``boxes`` ``(K, 4)`` XYXY (pixels) of
        image 0: RoIAlign of ``feats`` and of the normalised ``image`` ``(1, 3, H, W)``
        (0..255 RGB) concatenated."""
        boxes = boxes.to(feats.dtype)
        rois = roi_align(feats, boxes, self.mask_size, 1.0 / self.backbone.stride,
                         sampling_ratio=2, aligned=True)
        pixels = roi_align((image - self.pixel_mean) / self.pixel_std, boxes, self.mask_size,
                           1.0, sampling_ratio=2, aligned=True)
        return run_module(self.mask_head, torch.cat([rois, pixels], 1), self.precision)

    def semantic_logits(self, feats: Tensor, size: tuple[int, int]) -> Tensor:
        """``(N, num_stuff, H, W)`` stuff logits upsampled (bilinear) to the image ``size``."""
        logits = run_module(self.semantic_head, feats, self.precision)
        return F.interpolate(logits, size=size, mode="bilinear",
                             align_corners=False)
