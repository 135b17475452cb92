"""Precision: bf16 autocast where the config asks for it, float32 for what must stay exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from jtsm.config import load_config
from jtsm.errors import ConfigError
from jtsm.modeling.backbone import TinyNet
from jtsm.modeling.losses import mil_loss, refinement_loss, refinement_targets
from jtsm.modeling.model import MiningModel
from jtsm.modeling.precision import autocast, bf16_supported, compute_dtype, run_module
from jtsm.ops.boxes import box_iou
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.structures import ProposalSet

_BF16 = ["backbone.stride=16", "mining.fc_dim=16", "backbone.precision=bf16"]


def _bands() -> ProposalTensors:
    """Four proposals on a 48 x 48 image: unions of its four horizontal bands."""
    bands = np.arange(48 * 48).reshape(48, 48) // (48 * 12)
    membership = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]], bool)
    return ProposalTensors.from_proposal_set(ProposalSet(bands, membership))


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
    pt = _bands()
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


def test_autocast_is_a_null_context_for_fp32_and_bf16_autocast_for_bf16():
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def _head_dtypes(model: MiningModel) -> tuple[dict[str, torch.dtype], list[nn.Module]]:
    """Forward hooks on every linear layer of the mining head: ``name/in`` and ``name/out``
    -> the dtype the layer saw and gave (the last call)."""
    seen: dict[str, torch.dtype] = {}
    hooks = []
    for name, m in model.head.named_modules():
        if isinstance(m, nn.Linear):
            def hook(mod, inputs, output, name=name):  # noqa: ANN001, ANN202
                seen[f"{name}/in"], seen[f"{name}/out"] = inputs[0].dtype, output.dtype
            hooks.append(m.register_forward_hook(hook))
    return seen, hooks


def _mining_pair(seed: int = 0) -> tuple[MiningModel, MiningModel]:
    """The same mining model (dropout off) in fp32 and in bf16, identical weights."""
    torch.manual_seed(seed)
    sets = ["backbone.stride=16", "mining.fc_dim=64", "mining.dropout=0",
            "mining.oicr_heads=2"]
    fp32 = MiningModel.from_config(load_config(overrides=[*sets, "backbone.precision=fp32"]), 3)
    bf16 = MiningModel.from_config(load_config(overrides=[*sets, "backbone.precision=bf16"]), 3)
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16


def test_bf16_runs_the_mining_heads_linear_layers_in_bf16_and_the_losses_in_float32():
    """The head's FCs, S^C, S^D and refinement heads compute in bfloat16 (their outputs, and
    the inputs of all but the first, are bf16); scores, logits and losses come out float32,
    finite, close to the fp32 model's and not equal to them; gradients reach the head's
    float32 weights."""
    fp32, bf16 = _mining_pair()
    image, pt, tags = torch.rand(1, 3, 48, 48) * 255, _bands(), torch.tensor([1.0, 0.0, 1.0])
    seen, hooks = _head_dtypes(bf16)
    out = bf16(image, pt)
    for h in hooks:
        h.remove()
    assert seen["fc.0/in"] == torch.float32  # the pooled features: autocast casts them
    assert {k: v for k, v in seen.items() if k != "fc.0/in"} == dict.fromkeys(
        ["fc.0/out", "fc.3/in", "fc.3/out", "mil_cls/in", "mil_cls/out", "mil_det/in",
         "mil_det/out", "refine.0/in", "refine.0/out", "refine.1/in", "refine.1/out"],
        torch.bfloat16)
    for key in ("mil_scores", "image_scores", "scores"):
        assert out[key].dtype == torch.float32, key
    assert all(z.dtype == torch.float32 for z in out["refine_logits"] + out["refine_probs"])
    losses = bf16.losses(out, tags, pt)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    ref = fp32.losses(fp32(image, pt), tags, pt)
    for k, v in ref.items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(losses[k], v, rtol=0.05, atol=1e-3)
    assert any(not torch.equal(losses[k], ref[k]) for k in ref)  # bf16 really ran
    sum(losses.values()).backward()
    grads = [p.grad for p in bf16.head.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
               for g in grads)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())


def test_fp32_keeps_the_mining_head_in_float32():
    fp32, _ = _mining_pair()
    seen, hooks = _head_dtypes(fp32)
    out = fp32(torch.rand(1, 3, 48, 48) * 255, _bands())
    for h in hooks:
        h.remove()
    assert len(seen) == 2 * 6 and set(seen.values()) == {torch.float32}  # fc x2, S^C, S^D, r x2
    assert out["mil_scores"].dtype == torch.float32


def test_the_losses_of_bf16_outputs_are_computed_in_float32():
    """Scores and logits handed over in bfloat16 are cast before the losses: each term is
    float32 and equals the loss of the same values in float32 (so the MIL clamp at
    1 - 1e-6, which is 1 in bfloat16, keeps a score of 1 finite)."""
    torch.manual_seed(0)
    model = MiningModel.from_config(load_config(overrides=_BF16), 3)
    pt, tags = _bands(), torch.tensor([1.0, 0.0, 1.0])
    out = model(torch.rand(1, 3, 48, 48) * 255, pt)
    low = {"mil_scores": out["mil_scores"].bfloat16(),
           "image_scores": torch.tensor([1.0, 1.0, 0.25], dtype=torch.bfloat16),
           "refine_logits": [z.bfloat16() for z in out["refine_logits"]],
           "refine_probs": [z.bfloat16() for z in out["refine_probs"]]}
    losses = model.losses(low, tags, pt)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    torch.testing.assert_close(losses["loss_mil"],
                               mil_loss(low["image_scores"].float(), tags, model.mil_eps))
    labels, weights = refinement_targets(low["mil_scores"].float(), tags,
                                         lambda i: box_iou(pt.boxes, pt.boxes[i]))
    torch.testing.assert_close(losses["loss_refine_1"], refinement_loss(
        low["refine_logits"][0].float(), labels, weights))
