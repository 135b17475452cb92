"""Backbones: ResNet-18/34/50 (+ "-WS": res5 dilated, stride 16) and a tiny CPU network.

ResNets use torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so an
ImageNet state dict in torchvision's key layout loads with :func:`load_imagenet_weights`
(``torch.load(weights_only=True)``: a file from elsewhere runs no code).

Norms: ``"frozen_bn"`` (affine with fixed statistics, the default with pretrained weights),
``"gn"`` (GroupNorm, trains from scratch with one or a few images per batch), ``"bn"``.
Every backbone maps ``(N, 3, H, W)`` normalised images to ``(N, out_channels, H/s, W/s)`` with
``s = backbone.stride``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from jtsm.errors import ConfigError, DataError

__all__ = [
    "FrozenBatchNorm2d",
    "ResNet",
    "TinyNet",
    "BACKBONES",
    "build_backbone",
    "load_imagenet_weights",
]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, not parameters)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        state_dict.pop(prefix + "num_batches_tracked", None)  # torchvision BN has it
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(32, channels // 4) or 1, channels)
    raise ConfigError(f"unknown norm {kind!r}; use 'frozen_bn', 'gn' or 'bn'")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, norm: str) -> None:
        super().__init__()
        out = planes * 4
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = make_norm(norm, out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, out, stride, norm)

    def forward(self, x: Tensor) -> Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


def _downsample(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), make_norm(norm, cout))


class ResNet(nn.Module):
    """ResNet trunk with torchvision's names; C5 output (no avgpool / fc).

    Arguments:
        depth: 18, 34 or 50.
        dilate_res5: the "-WS" variant: ``layer4`` with stride 1 and dilation 2 (stride 16).
        norm: ``"frozen_bn"``, ``"gn"`` or ``"bn"``.
        freeze_at: 0 trains everything; 1 freezes the stem; ``k >= 2`` also ``layer1..k-1``.
    """

    _LAYERS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
               50: (Bottleneck, (3, 4, 6, 3))}

    def __init__(
        self, depth: int = 18, dilate_res5: bool = False, norm: str = "frozen_bn",
        freeze_at: int = 2,
    ) -> None:
        super().__init__()
        if depth not in self._LAYERS:
            raise ConfigError(f"ResNet depth must be 18, 34 or 50, got {depth}")
        block, counts = self._LAYERS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            stride = 1 if i == 0 or (i == 3 and dilate_res5) else 2
            dil = 2 if (i == 3 and dilate_res5) else 1
            blocks = []
            for j in range(n):
                # as torchvision's replace_stride_with_dilation: the first block of the
                # dilated stage keeps dilation 1, the following ones use 2
                d = 1 if j == 0 else dil
                blocks.append(block(cin, planes, stride if j == 0 else 1, d, norm))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = cin
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
        16 costs ~2.3x less per image (``warmup.stride`` of ``jtsm mine``).
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
    """Load a torchvision-layout ImageNet state dict (``fc.*`` ignored) into a :class:`ResNet`.

    Accepts a bare state dict or one under ``"state_dict"`` / ``"model"``. Raises
    :class:`DataError` naming the file when it cannot be read or keys do not match.
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
    missing, unexpected = model.load_state_dict(state, strict=False)
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
