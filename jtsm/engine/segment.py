"""One image through a trained model: the per-image pipeline that ``jtsm mine`` (its mined
outputs), ``jtsm predict`` and :class:`jtsm.Predictor` share, and the instances a panoptic
segmentation holds.

Proposal scores (test scales and flips averaged, :func:`jtsm.engine.inference.score_proposals`)
-> the classes present (the tags when known, else the image scores over the run's calibrated
thresholds) -> the panoptic segmentation (mined segments for a mining model, the refinement
branches' masks for a refined one) and the detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from jtsm.config import Config
from jtsm.engine.inference import score_proposals
from jtsm.engine.panoptic_inference import refined_panoptic
from jtsm.engine.selection import detections, mine_image, present_classes
from jtsm.modeling.panoptic_model import PanopticModel
from jtsm.structures import CategoryMap, PanopticSeg, ProposalSet

__all__ = ["ImageResult", "segment_image", "thing_segments"]


@dataclass
class ImageResult:
    """What :func:`segment_image` finds in one image.

    Attributes:
        panoptic: ``(H, W)`` segment ids and segments (with ``score``).
        detections: COCO result dicts (``image_id``, ``category_id``, ``bbox``, ``score``).
        image_scores: ``(C,)`` the image-level class scores.
    """

    panoptic: PanopticSeg
    detections: list[dict[str, Any]]
    image_scores: np.ndarray


def segment_image(model: nn.Module, image: np.ndarray, ps: ProposalSet, categories: CategoryMap,
                  cfg: Config, *, scales: Sequence[int], flip: bool = False,
                  tags: Sequence[int] | None = None, presence: np.ndarray | None = None,
                  image_id: int = 0) -> ImageResult:
    """One image's panoptic segmentation, detections and image scores.

    Arguments:
        model: a mining model (mined segments) or a refined :class:`PanopticModel`.
        image: RGB uint8 ``(H, W, 3)``; ps: its proposals (as
            :func:`jtsm.data.mining_dataset.select_proposals` keeps them).
        scales, flip: the test scales and horizontal flips averaged.
        tags: class indices known present (the training images' tags), else ``presence``
            thresholds ``(C,)`` or ``segments.presence_threshold`` decide.
    """
    scores, image_scores = score_proposals(model, image, ps, scales, cfg.input.max_size,
                                           flip=flip)
    present = present_classes(image_scores, tags, cfg.segments, presence)
    if isinstance(model, PanopticModel):
        seg = refined_panoptic(model, image, ps, scores, present, categories, cfg,
                               tagged=tags is not None)
    else:
        seg = mine_image(ps, scores, present, categories, cfg.segments)
    return ImageResult(seg, detections(ps, scores, categories, image_id, cfg.segments),
                       image_scores)


def thing_segments(seg: PanopticSeg, categories: CategoryMap
                   ) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The thing segments of ``seg`` with their ``(H, W)`` bool masks, in segment order."""
    things = {categories.category_id(i) for i in range(categories.num_things)}
    return [(s, seg.ids == s["id"]) for s in seg.segments if int(s["category_id"]) in things]
