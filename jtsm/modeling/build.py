"""One build path for every stage: ``build_model(cfg, categories, stage, device)``.

``mine`` builds a :class:`~jtsm.modeling.model.MiningModel`, ``refine`` a
:class:`~jtsm.modeling.panoptic_model.PanopticModel`; each takes its explicit arguments from
the config through its ``from_config``, and the model ends on ``device``.
"""

from __future__ import annotations

import torch
from torch import nn

from jtsm.config import Config
from jtsm.errors import ConfigError
from jtsm.modeling.model import MiningModel
from jtsm.modeling.panoptic_model import PanopticModel
from jtsm.structures import CategoryMap

__all__ = ["STAGES", "build_model"]

STAGES = ("mine", "refine")


def build_model(cfg: Config, categories: CategoryMap, stage: str = "mine",
                device: torch.device | str = "cpu", pretrained: bool = True) -> nn.Module:
    """The model of ``stage`` (``mine`` or ``refine``) over ``categories`` (things first,
    then stuff), on ``device``.

    ``pretrained=False`` builds the same modules without reading ``backbone.weights``: for a
    model whose trained weights are loaded next (a run folder, a refine run's start), so that
    no ImageNet file or network is needed there.
    """
    if stage == "mine":
        model: nn.Module = MiningModel.from_config(cfg, categories.num_classes, pretrained,
                                                   categories.num_things)
    elif stage == "refine":
        model = PanopticModel.from_config(cfg, categories.num_classes, categories.num_things,
                                          pretrained)
    else:
        raise ConfigError(f"unknown stage {stage!r} (want one of {', '.join(STAGES)})")
    return model.to(device)
