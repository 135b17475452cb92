"""jtsm plugin ``sam``: Segment Anything's automatic masks as segment proposals.

Installed (``pip install -e examples/jtsm-sam-plugin``), ``jtsm plugins`` lists it and
``jtsm proposals --method sam --opt checkpoint=sam_vit_b_01ec64.pth`` uses it
(:mod:`jtsm_sam.generate` says what it computes, :mod:`jtsm_sam.model` how models are built).

A note on supervision: SAM was trained on SA-1B, over a billion masks made with a
human-in-the-loop data engine. Proposals from it carry that mask supervision into the pipeline,
so results obtained with them are not learned from image-level labels only.
"""

from __future__ import annotations

from typing import Any

from jtsm.hookspecs import hookimpl
from jtsm.plugins import ProposalGenerator
from jtsm_sam.generate import generate

__all__ = ["DESCRIPTION", "generate", "register_proposal_generators"]

__version__ = "0.1.0"

DESCRIPTION = (
    "Segment Anything's automatic masks, score = predicted IoU x stability; needs "
    "checkpoint=PATH; options: model=vit_b|vit_l|vit_h, model_config=JSON, points_per_side=N, "
    "device=cpu|cuda, union=METHOD, SAM's pred_iou_thresh etc. NOT image-level labels only: "
    "SAM learned from over a billion human-in-the-loop masks (SA-1B)"
)


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(ProposalGenerator("sam", generate, DESCRIPTION))
