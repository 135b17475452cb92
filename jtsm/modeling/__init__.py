"""Models: backbones, proposal pooling, the mining head (MIL + refinement) and its losses."""

from jtsm.modeling.backbone import build_backbone, load_imagenet_weights
from jtsm.modeling.build import build_model
from jtsm.modeling.losses import mil_loss, refinement_loss, refinement_targets
from jtsm.modeling.mining_head import MiningHead
from jtsm.modeling.model import MiningModel
from jtsm.modeling.pooling import POOLERS, ProposalPooler, build_pooler

__all__ = [
    "build_backbone",
    "load_imagenet_weights",
    "mil_loss",
    "refinement_loss",
    "refinement_targets",
    "MiningHead",
    "build_model",
    "MiningModel",
    "POOLERS",
    "ProposalPooler",
    "build_pooler",
]
