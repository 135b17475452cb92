"""Backbones: torchvision-layout ImageNet weights load; strides; frozen stages; norms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jtsm.errors import ConfigError, DataError
from jtsm.modeling.backbone import FrozenBatchNorm2d, build_backbone


def _bn(prefix: str, c: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(c, generator=g),
        f"{prefix}.running_mean": torch.randn(c, generator=g),
        f"{prefix}.running_var": torch.rand(c, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(100),
    }


def torchvision_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A resnet18 state dict written from torchvision's naming scheme (incl. fc, BN counters)."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g)} | _bn("bn1", 64, g)
    cin = 64
    for i, planes in enumerate((64, 128, 256, 512), start=1):
        for j in range(2):
            p = f"layer{i}.{j}"
            sd[f"{p}.conv1.weight"] = torch.randn(planes, cin if j == 0 else planes, 3, 3,
                                                  generator=g)
            sd |= _bn(f"{p}.bn1", planes, g)
            sd[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3, generator=g)
            sd |= _bn(f"{p}.bn2", planes, g)
            if j == 0 and i > 1:
                sd[f"{p}.downsample.0.weight"] = torch.randn(planes, cin, 1, 1, generator=g)
                sd |= _bn(f"{p}.downsample.1", planes, g)
        cin = planes
    sd["fc.weight"] = torch.randn(1000, 512, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


def test_torchvision_layout_weights_load(tmp_path):
    sd = torchvision_resnet18_state()
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    m = build_backbone("resnet18-ws", weights=path)
    assert isinstance(m.bn1, FrozenBatchNorm2d)
    assert torch.equal(m.layer3[0].downsample[0].weight, sd["layer3.0.downsample.0.weight"])
    assert torch.equal(m.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])
    # frozen BN computes what an eval-mode BatchNorm with those statistics computes
    bn = nn.BatchNorm2d(64).eval()
    bn.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("bn1.")})
    x = torch.randn(2, 64, 5, 5)
    torch.testing.assert_close(m.bn1(x), bn(x))
    # default freeze_at=2 with weights: stem and layer1 fixed, layer2 trains
    assert not any(p.requires_grad for p in m.layer1.parameters())
    assert not m.conv1.weight.requires_grad
    assert all(p.requires_grad for p in m.layer2.parameters())


def test_wrapped_state_dict_and_mismatch_errors(tmp_path):
    sd = torchvision_resnet18_state()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    build_backbone("resnet18", weights=tmp_path / "w.pth")
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
    from jtsm.engine.mine import build_mining_model

    m = build_backbone("tiny", stride=16, width=24)
    assert m.out_channels == 192
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 192, 4, 4)
    n24 = sum(p.numel() for p in m.parameters())
    n32 = sum(p.numel() for p in build_backbone("tiny", stride=16).parameters())
    assert 0.5 < n24 / n32 < 0.6  # parameters (and compute) grow as the width's square
    cats = CategoryMap.from_coco([{"id": 1, "name": "a", "isthing": 1},
                                  {"id": 2, "name": "b", "isthing": 0}])
    model = build_mining_model(load_config(overrides={"backbone.width": 24}), cats)
    assert model.backbone.out_channels == 192
    with pytest.raises(ConfigError, match="backbone.width"):
        load_config(overrides={"backbone.width": 2})


def test_ws_variant_dilates_res5_like_torchvision():
    m = build_backbone("resnet18-ws")
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
    from jtsm.modeling.model import MiningConfig, MiningModel

    model = MiningModel(MiningConfig(num_classes=3, backbone="tiny", stride=8, hidden=16))
    with warmup_stride(model, 16):
        assert model.backbone.stride == 16
    assert model.backbone.stride == 8
    with pytest.raises(RuntimeError), warmup_stride(model, 16):
        raise RuntimeError("a failed warm-up")
    assert model.backbone.stride == 8
    resnet = MiningModel(MiningConfig(num_classes=3, backbone="resnet18", hidden=16))
    with warmup_stride(resnet, 0):  # 0 and the backbone's own stride are no-ops
        pass
    with pytest.raises(ConfigError, match="warmup.stride=8: backbone 'resnet18'"):
        with warmup_stride(resnet, 8):
            pass
