import numpy as np
import pytest
import torch

from jtsm.config import load_config
from jtsm.errors import ConfigError
from jtsm.modeling.backbone import TinyNet
from jtsm.modeling.model import MiningModel
from jtsm.modeling.precision import bf16_supported, compute_dtype, run_module
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.structures import ProposalSet

_BF16 = ["backbone.stride=16", "mining.fc_dim=16", "backbone.precision=bf16"]

def test_precision_names_map_to_dtypes():
    assert compute_dtype("fp32", "cpu") == torch.float32
    assert compute_dtype("bf16", "cpu") == torch.bfloat16
    auto = torch.bfloat16 if bf16_supported("cpu") else torch.float32
    assert compute_dtype("auto", "cpu") == auto
    with pytest.raises(ConfigError, match="fp16"):
        compute_dtype("fp16", "cpu")


def test_bf16_runs_the_convolutions_in_bf16_and_returns_float32_close_to_fp32():
    torch.manual_seed(0)
    net = TinyNet(stride=8, norm="bn").eval()
    x = torch.randn(2, 3, 64, 64)
    seen: list[torch.dtype] = []
    hook = net.body[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    ref = run_module(net, x, "fp32")
    low = run_module(net, x, "bf16")
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert low.dtype == torch.float32 and low.shape == ref.shape
    rel = (low - ref).norm() / ref.norm()
    assert 0 < rel < 0.05  # bfloat16 has an 8-bit mantissa: close, and not the same numbers


def test_a_bf16_mining_model_trains_its_backbone_in_float32():
    """Features come out float32, the backbone's weights and their gradients stay float32."""
    torch.manual_seed(0)
    model = MiningModel.from_config(load_config(overrides=_BF16), 3)
    image = torch.rand(1, 3, 48, 48) * 255
    bands = np.arange(48 * 48).reshape(48, 48) // (48 * 12)  # 4 horizontal bands
    membership = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]], bool)
    ps = ProposalSet(bands, membership)
    pt = ProposalTensors.from_proposal_set(ps)
    out = model(image, pt)
    assert model.features(image).dtype == torch.float32
    losses = model.losses(out, torch.tensor([1.0, 0.0, 1.0]), pt)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_the_refinement_heads_give_float32_logits_in_bf16():
    from jtsm.modeling.panoptic_model import PanopticModel

    torch.manual_seed(0)
    cfg = load_config(overrides=[*_BF16, "refine.mask_size=7", "refine.mask_channels=8",
                                 "refine.mask_convs=1", "refine.semantic_channels=8",
                                 "refine.semantic_convs=1"])
    model = PanopticModel.from_config(cfg, 4, num_things=2)
    image = torch.rand(1, 3, 48, 48) * 255
    feats = model.features(image)
    masks = model.mask_logits(feats, torch.tensor([[4.0, 4.0, 30.0, 40.0]]), image)
    stuff = model.semantic_logits(feats, (48, 48))
    assert masks.dtype == stuff.dtype == torch.float32
    assert masks.shape == (1, 2, 14, 14) and stuff.shape == (1, 2, 48, 48)
    assert torch.isfinite(masks).all() and torch.isfinite(stuff).all()
