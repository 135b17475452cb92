"""MiningModel end to end: every pooler, losses, backward, a few steps of learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jtsm.config import load_config
from jtsm.errors import ConfigError
from jtsm.modeling.losses import refinement_targets
from jtsm.modeling.model import MiningModel
from jtsm.modeling.pooling import POOLERS, build_pooler
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.structures import ProposalSet


def _model(num_classes: int, *overrides: str) -> MiningModel:
    """The tiny backbone at stride 16 with the mining head ``overrides`` describe."""
    cfg = load_config(overrides=["backbone.stride=16", *overrides])
    return MiningModel.from_config(cfg, num_classes)


def _scene(seed: int = 0, h: int = 64, w: int = 80):
    """Image with a bright square and a dark disk; proposals: the objects, parts, random."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 120.0)
    img[10:30, 10:34] = (250, 40, 40)
    yy, xx = np.mgrid[0:h, 0:w]
    disk = (yy - 44) ** 2 + (xx - 56) ** 2 < 12**2
    img[disk] = (20, 20, 200)
    masks = [np.zeros((h, w), bool) for _ in range(2)]
    masks[0][10:30, 10:34] = True
    masks[1] = disk
    for _ in range(10):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        m = np.zeros((h, w), bool)
        m[y0 : y0 + rng.integers(4, 30), x0 : x0 + rng.integers(4, 30)] = True
        masks.append(m)
    masks.append(~disk)  # a "stuff" segment
    ps = ProposalSet.from_masks(np.stack(masks), scores=rng.random(len(masks)))
    image = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return image, ProposalTensors.from_proposal_set(ps)


@pytest.mark.parametrize("pooler", POOLERS)
def test_forward_losses_backward_every_pooler(pooler):
    torch.manual_seed(0)
    model = _model(3, f"mining.pooling={pooler}", "mining.fc_dim=32", "mining.oicr_heads=2")
    image, props = _scene()
    out = model(image, props)
    p = len(props)
    assert out["mil_scores"].shape == (p, 3) and out["image_scores"].shape == (3,)
    assert [z.shape for z in out["refine_logits"]] == [(p, 4), (p, 4)]
    torch.testing.assert_close(out["mil_scores"].sum(0), out["image_scores"])
    losses = model.losses(out, torch.tensor([1.0, 0.0, 1.0]), props)
    assert sorted(losses) == ["loss_mil", "loss_refine_1", "loss_refine_2"]
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.body[0].weight.grad.abs().sum() > 0


def test_mask_overlap_option_uses_mask_iou():
    image, props = _scene()
    model = _model(2, "mining.fc_dim=16", "mining.oicr_heads=1", "mining.oicr_overlap=mask").eval()
    out = model(image, props)
    losses = model.losses(out, torch.tensor([1.0, 1.0]), props)
    assert torch.isfinite(losses["loss_refine_1"])
    labels, _ = refinement_targets(out["mil_scores"], torch.tensor([1.0, 1.0]), props.mask_iou)
    iou = props.mask_iou(out["mil_scores"].argmax(0))
    assert torch.equal(labels == 2, iou.max(1).values < 0.5)


def test_model_learns_tags_on_one_image():
    torch.manual_seed(0)
    image, props = _scene()
    model = _model(3, "mining.fc_dim=64", "mining.oicr_heads=1", "mining.dropout=0")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tags = torch.tensor([1.0, 0.0, 1.0])
    first = None
    for _ in range(12):
        out = model(image, props)
        loss = model.losses(out, tags, props)["loss_mil"]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    y = model(image, props)["image_scores"].detach()
    assert float(loss.detach()) < 0.5 * first
    assert min(y[0], y[2]) > 2 * y[1], y  # the present classes score above the absent one


def test_bad_inputs_and_config():
    image, props = _scene()
    model = _model(2, "mining.fc_dim=8", "mining.oicr_heads=0")
    with pytest.raises(ValueError, match="proposals"):
        model(image[:, :, :32], props)
    with pytest.raises(ConfigError):
        build_pooler("roi-warp")
    paper = MiningModel.from_config(load_config("voc"), 21, pretrained=False)
    assert paper.head.fc[0].out_features == 4096 and paper.backbone.stride == 16
