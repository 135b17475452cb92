"""Backbones: torchvision's ResNet-18/34/50 (+ "-WS": res5 dilated, stride 16) and a tiny CPU
network.

ResNets are ``torchvision.models.resnet18/34/50(weights=None)`` trunks (no avgpool / fc), so an
ImageNet state dict as torchvision writes it (``resnet18-f37072fd.pth``) loads with
:func:`load_imagenet_weights` (``torch.load(weights_only=True)``: a file from elsewhere runs no
code). The "-WS" variants are torchvision's ``replace_stride_with_dilation=[False, False,
True]``: ``layer4`` keeps stride 1, its first block dilation 1 and the others dilation 2.
torchvision builds that for ResNet-50 itself; its BasicBlock refuses dilation, so for
ResNet-18/34 the same change is made to the built modules (strides and dilations only; the
parameters, their names and shapes are torchvision's).

Norms: ``"frozen_bn"`` (:class:`FrozenBatchNorm2d`, torchvision's with the input's dtype kept;
the default with pretrained weights), ``"gn"`` (GroupNorm, trains from scratch with one or a
few images per batch), ``"bn"``. Every backbone maps ``(N, 3, H, W)`` normalised images to
``(N, out_channels, H/s, W/s)`` with ``s = backbone.stride``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d as _TorchvisionFrozenBN

from jtsm.errors import ConfigError, DataError

__all__ = [
    "FrozenBatchNorm2d",
    "ResNet",
    "TinyNet",
    "BACKBONES",
    "build_backbone",
    "load_imagenet_weights",
]


class FrozenBatchNorm2d(_TorchvisionFrozenBN):
    """``torchvision.ops.FrozenBatchNorm2d`` that returns its input's dtype.

    torchvision's computes ``x * scale + shift`` with its float32 buffers, so after a bfloat16
    convolution (autocast) it returns float32 and the next convolution casts back: every
    norm of the backbone a round trip through float32. Here the scale and shift are computed
    from the buffers in float32 (or the buffers' wider type) and applied in ``x.dtype``
    (one ``addcmul``); an input of the buffers' own dtype takes torchvision's arithmetic,
    bit for bit. Buffers, state-dict keys and the loading of torchvision's ImageNet weights
    (``num_batches_tracked`` dropped) are torchvision's.

    ``forward(x (N, C, H, W))`` -> ``(N, C, H, W)`` of ``x.dtype``.
    """

    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        if x.dtype == dtype:
            return super().forward(x)
        w, b, rm, rv = (t.to(dtype).reshape(1, -1, 1, 1) for t in
                        (self.weight, self.bias, self.running_mean, self.running_var))
        scale = w * (rv + self.eps).rsqrt()
        shift = b - rm * scale
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """The ``norm_layer`` torchvision's ResNet takes for ``kind``."""
    layers: dict[str, Callable[[int], nn.Module]] = {
        "frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d, "gn": _group_norm}
    if kind not in layers:
        raise ConfigError(f"unknown norm {kind!r}; use 'frozen_bn', 'gn' or 'bn'")
    return layers[kind]


def make_norm(kind: str, channels: int) -> nn.Module:
    return norm_layer(kind)(channels)


def _dilate_basic_layer4(layer4: nn.Sequential) -> None:
    """torchvision's ``replace_stride_with_dilation`` for the last stage, on BasicBlocks."""
    first = layer4[0]
    first.conv1.stride = (1, 1)
    first.stride = 1
    if first.downsample is not None:
        first.downsample[0].stride = (1, 1)
    for block in list(layer4)[1:]:
        for conv in (block.conv1, block.conv2):
            conv.dilation, conv.padding = (2, 2), (2, 2)


class ResNet(nn.Module):
    """torchvision's ResNet trunk with its module names; C5 output (no avgpool / fc).

    Arguments:
        depth: 18, 34 or 50.
        dilate_res5: the "-WS" variant: ``layer4`` with stride 1 and dilation 2 (stride 16).
        norm: ``"frozen_bn"``, ``"gn"`` or ``"bn"``.
        freeze_at: 0 trains everything; 1 freezes the stem; ``k >= 2`` also ``layer1..k-1``.
    """

    _BUILD = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
              50: torchvision.models.resnet50}

    def __init__(
        self, depth: int = 18, dilate_res5: bool = False, norm: str = "frozen_bn",
        freeze_at: int = 2,
    ) -> None:
        super().__init__()
        if depth not in self._BUILD:
            raise ConfigError(f"ResNet depth must be 18, 34 or 50, got {depth}")
        bottleneck = depth == 50
        net = self._BUILD[depth](
            weights=None, norm_layer=norm_layer(norm),
            replace_stride_with_dilation=[False, False, dilate_res5 and bottleneck],
        )
        if dilate_res5 and not bottleneck:
            _dilate_basic_layer4(net.layer4)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.out_channels = net.fc.in_features
        self.stride = 16 if dilate_res5 else 32
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        stages = [nn.ModuleList([self.conv1, self.bn1])] + [
            getattr(self, f"layer{i}") for i in range(1, 5)
        ]
        for stage in stages[: max(0, freeze_at)]:
            for prm in stage.parameters():
                prm.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, out_channels, H / stride, W / stride)`` (``layer4``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class TinyNet(nn.Module):
    """Small fast CPU backbone (~1.2M parameters) for training from scratch in minutes.

    Stem conv 3x3/2 (32) then three stages of two 3x3 convs (64, 128, 256), each stage
    halving the resolution; with ``stride=8`` the last stage is dilated instead. GroupNorm by
    default; ``norm="bn"`` trains faster from scratch with batches of several images (the
    tag warm-up of ``jtsm mine``), after which its statistics can be frozen.
    """

    def __init__(self, stride: int = 16, width: int = 32, norm: str = "gn") -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = [*self._conv(3, chans[0], 2, 1, norm)]
        for i in range(1, 4):  # built at stride 16; set_stride makes the last stage stride 8
            layers += self._conv(chans[i - 1], chans[i], 2, 1, norm)
            layers += self._conv(chans[i], chans[i], 1, 1, norm)
        self.body = nn.Sequential(*layers)
        self.out_channels = chans[-1]
        # the last stage's two convs: strided + plain (stride 16) or plain + dilated (stride 8)
        self._last = (layers[-6], layers[-3])
        self.set_stride(stride)  # checks stride

    def set_stride(self, stride: int) -> None:
        """Switch between stride 16 and stride 8 with the same weights (DeepLab's "a trous").

        At stride 8 the last stage's first conv does not subsample and its second conv is
        dilated by 2, so the stride-8 map holds the stride-16 map exactly at its even positions
        (the odd ones are the same network on the input shifted by 8 px). Training at stride
        16 costs ~2.3x less per image (``tag_warmup.stride`` of ``jtsm mine``).
        """
        if stride not in (8, 16):
            raise ConfigError(f"TinyNet stride must be 8 or 16, got {stride}")
        first, second = self._last
        first.stride = (2, 2) if stride == 16 else (1, 1)
        d = 1 if stride == 16 else 2
        second.dilation, second.padding = (d, d), (d, d)
        self.stride = stride

    @staticmethod
    def _conv(cin: int, cout: int, stride: int, dil: int, norm: str) -> list[nn.Module]:
        layer = nn.GroupNorm(8, cout) if norm == "gn" else make_norm(norm, cout)
        return [nn.Conv2d(cin, cout, 3, stride, dil, dil, bias=False), layer,
                nn.ReLU(inplace=True)]

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def load_imagenet_weights(model: nn.Module, path: str | Path) -> None:
    """Load an ImageNet state dict as torchvision writes it (``fc.*`` ignored) into a
    :class:`ResNet`.

    Accepts a bare state dict or one under ``"state_dict"`` / ``"model"`` (a ``module.``
    prefix is dropped). Raises :class:`DataError` naming the file when it cannot be read, is
    not a state dict, or its keys or shapes do not match the backbone.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise DataError(f"{path}: cannot load weights ({exc.__class__.__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(f"{path}: not a state dict (values other than tensors)")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ: another depth or a different network
        first = str(exc).strip().splitlines()[-1].strip()
        raise DataError(f"{path}: weights do not match the backbone ({first})") from exc
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise DataError(
            f"{path}: weights do not match the backbone "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
        )


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": lambda **kw: ResNet(18, False, **kw),
    "resnet34": lambda **kw: ResNet(34, False, **kw),
    "resnet50": lambda **kw: ResNet(50, False, **kw),
    "resnet18-ws": lambda **kw: ResNet(18, True, **kw),
    "resnet34-ws": lambda **kw: ResNet(34, True, **kw),
    "resnet50-ws": lambda **kw: ResNet(50, True, **kw),
    "tiny": lambda **kw: TinyNet(**{k: v for k, v in kw.items()
                                    if k in ("stride", "norm", "width")}),
}


def build_backbone(
    name: str = "resnet18-ws",
    weights: str | Path | None = None,
    norm: str | None = None,
    freeze_at: int | None = None,
    stride: int = 16,
    width: int = 32,
) -> nn.Module:
    """Build a backbone by name (see :data:`BACKBONES`).

    Arguments:
        weights: ImageNet state dict (torchvision layout) for ResNets; None trains from scratch.
        norm: defaults to ``"frozen_bn"`` with weights and ``"gn"`` without.
        freeze_at: defaults to 2 (stem + layer1) with weights and 0 without.
        stride: TinyNet only (8 or 16).
        width: TinyNet only, the stem's channels (stages 2x, 4x, 8x; output ``8 * width``).
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if name == "tiny":
        if weights is not None:
            raise ConfigError("the tiny backbone has no pretrained weights")
        return BACKBONES[name](stride=stride, norm=norm or "gn", width=width)
    norm = norm or ("frozen_bn" if weights else "gn")
    freeze_at = (2 if weights else 0) if freeze_at is None else freeze_at
    model = BACKBONES[name](norm=norm, freeze_at=freeze_at)
    if weights is not None:
        load_imagenet_weights(model, weights)
    return model
