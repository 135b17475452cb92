"""The training objectives, beside the models they train (DETR's ``SetCriterion`` in spirit):
a criterion maps a model's outputs and an image's targets to a dict of named scalar losses,
each already multiplied by its weight of ``weight_dict``; the loss a step minimises is their
sum.

- :class:`MiningCriterion`: the mining branch, L_PM = L_MIL (Eq. 2) + sum_r L_r (Eq. 3, 4).
- :class:`PanopticCriterion`: stage 2, Eq. 1: L = w_PM L_PM + w_IS L_IS (Eq. 9) +
  w_SS L_SS (Eq. 10).

Every loss is computed and reduced in float32 (at least), whatever the model's precision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from jtsm.modeling.losses import (
    instance_mask_loss,
    mil_loss,
    refinement_loss,
    refinement_targets,
    semantic_loss,
)
from jtsm.ops.boxes import box_iou
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.sync_counter import on_host
from jtsm.ops.transfer import to_device

if TYPE_CHECKING:
    from jtsm.config import Config, MaskWeight

__all__ = ["MiningCriterion", "PanopticCriterion"]


def _at_least_fp32(x: Tensor) -> Tensor:
    """``x`` as float32 if it is of a narrower float type (float64 kept); no copy if not."""
    return x.float() if x.is_floating_point() and x.element_size() < 4 else x


class MiningCriterion:
    """MIL loss (Eq. 2) and one refinement loss per head (Eq. 3); Eq. 4 is their sum.

    Arguments:
        oicr_overlap: ``box`` or ``mask``: the overlap by which OICR spreads a pseudo label to
            the proposals around it (``mining.oicr_overlap``).
        oicr_iou_threshold: the overlap from which a proposal takes that label.
        mil_eps: image scores are clamped to ``[eps, 1 - eps]`` in the MIL loss.
        weight_dict: ``{"loss_mil": w, "loss_refine": w}`` (1 by default; ``loss_refine``
            weighs every head's term).
    """

    def __init__(self, oicr_overlap: str = "box", oicr_iou_threshold: float = 0.5,
                 mil_eps: float = 1e-6, weight_dict: Mapping[str, float] | None = None,
                 stuff_seeds: int = 1, num_things: int | None = None) -> None:
        self.oicr_overlap, self.oicr_iou_threshold, self.mil_eps = (
            oicr_overlap, oicr_iou_threshold, mil_eps)
        self.stuff_seeds, self.num_things = stuff_seeds, num_things
        self.weight_dict = {"loss_mil": 1.0, "loss_refine": 1.0, **(weight_dict or {})}

    @classmethod
    def from_config(cls, cfg: Config, weight: float = 1.0, num_things: int | None = None
                    ) -> MiningCriterion:
        """As ``jtsm mine`` trains (``weight`` scales every term: stage 2's w_PM; classes from
        ``num_things`` on are stuff)."""
        return cls(cfg.mining.oicr_overlap, cfg.mining.oicr_iou_threshold,
                   weight_dict={"loss_mil": weight, "loss_refine": weight},
                   stuff_seeds=cfg.mining.stuff_seeds, num_things=num_things)

    def __call__(self, outputs: Mapping[str, Any], tags: Tensor,
                 proposals: ProposalTensors) -> dict[str, Tensor]:
        """``outputs``: the mining head's dict (``image_scores`` ``(C,)``, ``mil_scores``
        ``(P, C)``, ``refine_logits`` / ``refine_probs`` per head ``(P, C + 1)``); ``tags``
        ``(C,)`` 0/1. Returns ``loss_mil`` and ``loss_refine_r`` (r = 1..n_r).

        Host ``tags`` and ``proposals`` (the loader's) give no host synchronisation on a GPU:
        the present classes are found on the host, once for every head, and what the losses
        need goes to the device in non-blocking copies.
        """
        dev = outputs["image_scores"].device
        with on_host() if tags.device.type == "cpu" else nullcontext():
            host = torch.nonzero(tags > 0).squeeze(1)
            listed = host.tolist() if self.stuff_seeds > 1 else None
            classes = to_device(host, dev)
        tags = to_device(tags, dev)
        w = self.weight_dict
        out = {"loss_mil": w["loss_mil"] * mil_loss(_at_least_fp32(outputs["image_scores"]),
                                                    tags, self.mil_eps)}
        overlap: Callable[[Tensor], Tensor]
        if self.oicr_overlap == "mask":
            proposals = proposals.to(dev)

            def overlap(idx: Tensor) -> Tensor:
                return proposals.mask_iou(idx).to(outputs["mil_scores"].dtype)
        else:
            boxes = to_device(proposals.boxes, outputs["mil_scores"].device)

            def overlap(idx: Tensor) -> Tensor:
                return box_iou(boxes, boxes[idx])

        prev = outputs["mil_scores"].detach()
        for r, (logits, probs) in enumerate(zip(outputs["refine_logits"],
                                                outputs["refine_probs"])):
            labels, weights = refinement_targets(prev, tags, overlap,
                                                 self.oicr_iou_threshold, classes,
                                                 self.stuff_seeds, self.num_things, listed)
            out[f"loss_refine_{r + 1}"] = w["loss_refine"] * refinement_loss(
                _at_least_fp32(logits), labels, _at_least_fp32(weights))
            prev = probs.detach()
        return out


class PanopticCriterion:
    """Eq. 1 of stage 2: the mining losses (L_PM, :class:`MiningCriterion`, weighted by
    ``w_PM``), the instance-mask loss L_IS (Eq. 9) and the semantic loss L_SS (Eq. 10).

    Arguments:
        mining: the criterion of the mining branch, its weights w_PM.
        weight_dict: ``{"loss_mask": w_IS, "loss_semantic": w_SS}``.
        mask_weight: Eq. 9's weight of each box: ``image_score`` (y_c, the class's image
            score, as the paper), ``segment_score`` (the pseudo segment's own score, as the
            targets carry it) or ``none``.
    """

    def __init__(self, mining: MiningCriterion, weight_dict: Mapping[str, float] | None = None,
                 mask_weight: MaskWeight = "image_score") -> None:
        self.mining = mining
        self.weight_dict = {"loss_mask": 1.0, "loss_semantic": 1.0, **(weight_dict or {})}
        self.mask_weight = mask_weight

    @classmethod
    def from_config(cls, cfg: Config, num_things: int | None = None) -> PanopticCriterion:
        """As ``jtsm refine`` trains (``refine.*_weight``, ``refine.mask_weight``)."""
        r = cfg.refine
        return cls(MiningCriterion.from_config(cfg, r.mining_weight, num_things),
                   {"loss_mask": r.instance_weight, "loss_semantic": r.semantic_weight},
                   r.mask_weight)

    def __call__(self, mining_outputs: Mapping[str, Any], tags: Tensor,
                 proposals: ProposalTensors, mask_logits: Tensor, classes: Tensor,
                 mask_targets: Tensor, box_weights: Tensor, semantic_logits: Tensor,
                 stuff_map: Tensor) -> dict[str, Tensor]:
        """The terms of Eq. 1 for one image.

        Arguments:
            mining_outputs, tags, proposals: as :class:`MiningCriterion`.
            mask_logits: ``(B, T, 2S, 2S)`` per-class mask logits of ``B`` boxes; classes
                ``(B,)`` their thing classes; mask_targets ``(B, 2S, 2S)`` 0/1;
                box_weights ``(B,)`` the pseudo segments' scores (used by ``segment_score``).
            semantic_logits: ``(1, S_c, H, W)``; stuff_map ``(H, W)`` stuff class per pixel,
                -1 ignored.
        Returns:
            ``loss_mil``, ``loss_refine_r``, ``loss_mask``, ``loss_semantic``.
        """
        out = self.mining(mining_outputs, tags, proposals)
        dev = mask_logits.device
        classes = to_device(classes, dev)
        if self.mask_weight == "image_score":  # Eq. 9: y_c, the class's image-level score
            weights = mining_outputs["image_scores"].detach()[classes].clamp(0, 1)
        elif self.mask_weight == "none":
            weights = torch.ones_like(box_weights)
        else:
            weights = box_weights
        out["loss_mask"] = self.weight_dict["loss_mask"] * instance_mask_loss(
            mask_logits, classes, to_device(mask_targets, dev), to_device(weights, dev))
        out["loss_semantic"] = self.weight_dict["loss_semantic"] * semantic_loss(
            semantic_logits, to_device(stuff_map, dev))
        return out
