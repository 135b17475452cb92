"""The criteria beside the models: MiningCriterion (Eq. 2-4) and PanopticCriterion (Eq. 1, 9,
10), each term multiplied by its weight of ``weight_dict``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from jtsm.config import load_config
from jtsm.modeling.criterion import MiningCriterion, PanopticCriterion
from jtsm.modeling.losses import instance_mask_loss, semantic_loss

sys.path.insert(0, str(Path(__file__).parent))
from test_model import _model, _scene  # noqa: E402


def _outputs():
    torch.manual_seed(0)
    model = _model(3, "mining.fc_dim=16", "mining.oicr_heads=2").eval()
    image, props = _scene()
    return model, model(image, props), props


def test_mining_criterion_is_the_models_losses_and_weights_each_term():
    model, out, props = _outputs()
    tags = torch.tensor([1.0, 0.0, 1.0])
    plain = MiningCriterion()(out, tags, props)
    assert plain.keys() == model.losses(out, tags, props).keys()
    for k, v in model.losses(out, tags, props).items():
        assert torch.equal(plain[k], v)
    weighted = MiningCriterion(weight_dict={"loss_mil": 2.0, "loss_refine": 0.5})(
        out, tags, props)
    assert torch.allclose(weighted["loss_mil"], 2 * plain["loss_mil"])
    assert torch.allclose(weighted["loss_refine_2"], 0.5 * plain["loss_refine_2"])


@pytest.mark.parametrize("mode", ["image_score", "segment_score", "none"])
def test_panoptic_criterion_follows_eq_1_and_the_box_weights_of_eq_9(mode):
    _, out, props = _outputs()
    tags = torch.tensor([1.0, 0.0, 1.0])
    torch.manual_seed(1)
    logits = torch.randn(4, 2, 8, 8)
    classes = torch.tensor([0, 1, 1, 0])
    targets = (torch.rand(4, 8, 8) > 0.5).float()
    box_w = torch.tensor([0.9, 0.2, 0.5, 0.7])
    sem = torch.randn(1, 2, 16, 16)
    stuff = torch.randint(-1, 2, (16, 16))
    cfg = load_config(overrides=["refine.mining_weight=0.5", "refine.instance_weight=3",
                                 "refine.semantic_weight=0.25", f"refine.mask_weight={mode}"])
    crit = PanopticCriterion.from_config(cfg)
    got = crit(out, tags, props, logits, classes, targets, box_w, sem, stuff)
    mining = MiningCriterion()(out, tags, props)
    for k in mining:
        assert torch.allclose(got[k], 0.5 * mining[k])
    want_w = {"image_score": out["image_scores"].detach()[classes].clamp(0, 1),
              "segment_score": box_w, "none": torch.ones(4)}[mode]
    assert torch.allclose(got["loss_mask"], 3 * instance_mask_loss(logits, classes, targets,
                                                                   want_w))
    assert torch.allclose(got["loss_semantic"], 0.25 * semantic_loss(sem, stuff))


def test_stuff_seeds_reach_the_criteria_of_both_stages_with_the_stuff_classes():
    """``mining.stuff_seeds`` and which classes are stuff travel from the config and the
    categories to the losses MIL and refine train with."""
    from jtsm.engine.mine import MilTrainModule
    from jtsm.engine.refine import RefineTrainModule
    from jtsm.modeling.build import build_model
    from jtsm.structures import CategoryMap

    cats = CategoryMap.from_coco([{"id": 1, "name": "dog", "isthing": 1},
                                  {"id": 2, "name": "cat", "isthing": 1},
                                  {"id": 7, "name": "sky", "isthing": 0}])
    cfg = load_config(overrides=["mining.stuff_seeds=10", "mining.fc_dim=16"])
    mine = MilTrainModule.from_config(build_model(cfg, cats, "mine", pretrained=False), cfg)
    assert (mine.criterion.stuff_seeds, mine.criterion.num_things) == (10, 2)
    model = build_model(cfg, cats, "refine", pretrained=False)
    refine = RefineTrainModule.from_config(model, cfg)
    assert (refine.criterion.mining.stuff_seeds, refine.criterion.mining.num_things) == (10, 2)
    assert (model.stuff_seeds, model.num_things) == (10, 2)  # what model.losses() reads
    default = load_config()
    assert MiningCriterion.from_config(default).stuff_seeds == 1  # OICR's single seed
