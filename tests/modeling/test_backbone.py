"""Backbones: torchvision's ResNets, ImageNet weights as torchvision writes them; strides;
frozen stages; norms."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from jtsm.errors import ConfigError, DataError
from jtsm.modeling.backbone import FrozenBatchNorm2d, build_backbone


def _randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as a trained checkpoint has."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5
            m.num_batches_tracked.fill_(100)
    return net.eval()


def torchvision_state(depth: int = 18, **kw) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A torchvision ResNet (eval, random weights) and its state dict, incl. fc and BN
    counters: what ``resnet18-f37072fd.pth`` holds."""
    torch.manual_seed(depth)
    net = _randomise_bn(getattr(torchvision.models, f"resnet{depth}")(weights=None, **kw))
    return net, net.state_dict()


def _layer4(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


@pytest.mark.parametrize("name,depth,kw", [
    ("resnet18", 18, {}),
    ("resnet50-ws", 50, {"replace_stride_with_dilation": [False, False, True]}),
])
def test_torchvision_checkpoint_loads_and_gives_its_layer4(tmp_path, name, depth, kw):
    tv, sd = torchvision_state(depth, **kw)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(sd, path)
    m = build_backbone(name, weights=path).eval()
    assert isinstance(m.bn1, FrozenBatchNorm2d)
    assert torch.equal(m.layer3[0].downsample[0].weight, sd["layer3.0.downsample.0.weight"])
    x = torch.randn(1, 3, 96, 64, dtype=torch.float64)  # float64: only the same maths agrees
    with torch.no_grad():
        ref, out = _layer4(tv.double(), x), m.double()(x)
    assert out.shape == ref.shape == (1, m.out_channels, 96 // m.stride, 64 // m.stride)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    # default freeze_at=2 with weights: stem and layer1 fixed, layer2 trains
    assert not any(p.requires_grad for p in m.layer1.parameters())
    assert not m.conv1.weight.requires_grad
    assert all(p.requires_grad for p in m.layer2.parameters())


def test_resnet18_ws_loads_resnet18_weights_and_dilates_only_res5(tmp_path):
    tv, sd = torchvision_state(18)
    torch.save(sd, tmp_path / "r18.pth")
    m = build_backbone("resnet18-ws", weights=tmp_path / "r18.pth").eval()
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    tv, m = tv.double(), m.double()
    with torch.no_grad():
        c4 = tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))))))
        ours = m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))
        assert m(x).shape == (1, 512, 4, 6)
    torch.testing.assert_close(ours, c4, rtol=1e-9, atol=1e-9)


def test_wrapped_state_dict_and_mismatch_errors(tmp_path):
    _, sd = torchvision_state(18)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    build_backbone("resnet18", weights=tmp_path / "w.pth")
    torch.save(sd, tmp_path / "r18.pth")
    with pytest.raises(DataError, match="r18.pth: weights do not match"):
        build_backbone("resnet50", weights=tmp_path / "r18.pth")  # shapes differ
    del sd["layer2.1.conv1.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="bad.pth"):
        build_backbone("resnet18", weights=tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pth"):
        build_backbone("resnet18", weights=tmp_path / "junk.pth")


@pytest.mark.parametrize(
    "name,stride,channels",
    [("resnet18-ws", 16, 512), ("resnet18", 32, 512), ("resnet50-ws", 16, 2048),
     ("tiny", 16, 256)],
)
def test_output_stride_and_channels(name, stride, channels):
    m = build_backbone(name)
    out = m(torch.randn(1, 3, 64, 96))
    assert (m.stride, m.out_channels) == (stride, channels)
    assert out.shape == (1, channels, 64 // stride, 96 // stride)


def test_scratch_defaults_groupnorm_all_trainable():
    m = build_backbone("resnet34")
    assert isinstance(m.bn1, nn.GroupNorm)
    assert all(p.requires_grad for p in m.parameters())


def test_tiny_backbone_small_and_stride8():
    m = build_backbone("tiny", stride=8)
    n = sum(p.numel() for p in m.parameters())
    assert 0.5e6 <= n <= 2e6
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 256, 8, 8)
    with pytest.raises(ConfigError):
        build_backbone("tiny", stride=4)
    with pytest.raises(ConfigError):
        build_backbone("vgg16")


def test_tiny_width_scales_channels_and_reaches_the_mining_model():
    from jtsm.config import load_config
    from jtsm.data.labels import CategoryMap
    from jtsm.modeling.build import build_model

    m = build_backbone("tiny", stride=16, width=24)
    assert m.out_channels == 192
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 192, 4, 4)
    n24 = sum(p.numel() for p in m.parameters())
    n32 = sum(p.numel() for p in build_backbone("tiny", stride=16).parameters())
    assert 0.5 < n24 / n32 < 0.6  # parameters (and compute) grow as the width's square
    cats = CategoryMap.from_coco([{"id": 1, "name": "a", "isthing": 1},
                                  {"id": 2, "name": "b", "isthing": 0}])
    model = build_model(load_config(overrides={"backbone.width": 24}), cats)
    assert model.backbone.out_channels == 192
    for bad in (2, 4, 12):  # 8 groups of the stem's channels (4 was a raw torch ValueError)
        with pytest.raises(ConfigError, match=f"backbone.width={bad} is out of range"):
            load_config(overrides={"backbone.width": bad})


def test_ws_variant_dilates_res5_like_torchvision():
    m = build_backbone("resnet18-ws")
    tv = torchvision.models.resnet50(weights=None,
                                     replace_stride_with_dilation=[False, False, True])
    ours = build_backbone("resnet50-ws")
    for a, b in zip(ours.layer4.modules(), tv.layer4.modules()):
        if isinstance(a, nn.Conv2d):
            assert (a.stride, a.dilation, a.padding) == (b.stride, b.dilation, b.padding)
    assert m.layer4[0].conv1.stride == (1, 1) and m.layer4[0].conv1.dilation == (1, 1)
    assert m.layer4[1].conv1.dilation == (2, 2) and m.layer4[1].conv2.dilation == (2, 2)
    assert m.layer3[0].conv1.stride == (2, 2)
    r50 = build_backbone("resnet50-ws")
    assert r50.layer4[0].conv2.stride == (1, 1) and r50.layer4[2].conv2.dilation == (2, 2)


def test_tiny_set_stride_is_a_trous_of_the_same_weights():
    """Stride 8 holds the stride-16 map at its even positions, so a warm-up at stride 16 trains
    exactly the network MIL runs at stride 8; switching back restores the stride-8 output."""
    torch.manual_seed(0)
    net = build_backbone("tiny", norm="bn", stride=8).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 128, 96)
    fine = net(x)
    net.set_stride(16)
    coarse = net(x)
    assert net.stride == 16 and coarse.shape[2:] == (8, 6)
    torch.testing.assert_close(fine[:, :, ::2, ::2], coarse, rtol=0, atol=1e-5)
    assert (fine[:, :, 1::2, 1::2] - coarse).abs().max() > 1e-3  # odd positions are new
    net.set_stride(8)
    assert torch.equal(net(x), fine)
    with pytest.raises(ConfigError, match="stride must be 8 or 16"):
        net.set_stride(4)


def test_warmup_stride_restores_and_refuses_fixed_backbones():
    from jtsm.engine.mine import warmup_stride
    from jtsm.modeling.model import MiningModel

    model = MiningModel(build_backbone("tiny", stride=8), 3, fc_dim=16)
    with warmup_stride(model, 16):
        assert model.backbone.stride == 16
    assert model.backbone.stride == 8
    with pytest.raises(RuntimeError), warmup_stride(model, 16):
        raise RuntimeError("a failed warm-up")
    assert model.backbone.stride == 8
    resnet = MiningModel(build_backbone("resnet18"), 3, fc_dim=16)
    with warmup_stride(resnet, 0):  # 0 and the backbone's own stride are no-ops
        pass
    with pytest.raises(ConfigError, match="tag_warmup.stride=8: a ResNet backbone"):
        with warmup_stride(resnet, 8):
            pass


def _frozen_pair(c: int = 16, seed: int = 0) -> tuple[nn.Module, FrozenBatchNorm2d]:
    """torchvision's FrozenBatchNorm2d and ours with the same non-trivial statistics."""
    g = torch.Generator().manual_seed(seed)
    ref = torchvision.ops.FrozenBatchNorm2d(c)
    ref.load_state_dict({"weight": torch.rand(c, generator=g) + 0.5,
                         "bias": torch.randn(c, generator=g),
                         "running_mean": torch.randn(c, generator=g),
                         "running_var": torch.rand(c, generator=g) + 0.1})
    ours = FrozenBatchNorm2d(c)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def test_frozen_bn_is_torchvisions_exactly_in_float32_and_float64():
    ref, ours = _frozen_pair()
    assert isinstance(ours, torchvision.ops.FrozenBatchNorm2d)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert repr(ours) == repr(ref) == "FrozenBatchNorm2d(16, eps=1e-05)"
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(ours(x), ref(x))
    assert torch.equal(ours(x.to(memory_format=torch.channels_last)), ref(x))
    assert torch.equal(ours.double()(x.double()), ref.double()(x.double()))


def test_frozen_bn_keeps_bf16_and_agrees_with_torchvision_within_bf16():
    """torchvision's returns float32 for a bfloat16 input (its buffers are float32); ours
    returns bfloat16, the same numbers to bfloat16's rounding, also under autocast."""
    ref, ours = _frozen_pair()
    x = (torch.randn(2, 16, 5, 7) * 3).bfloat16()
    want = ref(x)
    assert want.dtype == torch.float32
    got = ours(x)
    assert got.dtype == torch.bfloat16 and got.shape == x.shape
    torch.testing.assert_close(got.float(), want, rtol=2**-7, atol=2**-7)
    assert not torch.equal(got.float(), want)  # rounded to bf16: not torchvision's float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours(x).dtype == torch.bfloat16
    assert ours.weight.dtype == torch.float32  # the buffers stay float32


def test_a_frozen_bn_resnet_stays_bf16_from_conv_to_conv_under_autocast(tmp_path):
    """ImageNet weights (torchvision's layout) load into the frozen-BN ResNet; under bf16
    autocast no norm hands float32 to the next conv, and the result is close to float32's."""
    _, sd = torchvision_state(18)
    torch.save(sd, tmp_path / "r18.pth")
    m = build_backbone("resnet18", weights=tmp_path / "r18.pth").eval()
    norms = [x for x in m.modules() if isinstance(x, FrozenBatchNorm2d)]
    assert len(norms) == 20
    seen: list[torch.dtype] = []
    hooks = [n.register_forward_hook(lambda mod, i, o: seen.append(o.dtype)) for n in norms]
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        ref = m(x)
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(x)
    for h in hooks:
        h.remove()
    assert seen == [torch.bfloat16] * 20 and low.dtype == torch.bfloat16
    rel = (low.float() - ref).norm() / ref.norm()
    assert 0 < rel < 0.05
