"""ImageNet weights for the ResNet backbones, found where torchvision keeps them.

``backbone.weights`` takes one of:

- ``imagenet``: torchvision's ImageNet-1k weights of the backbone's depth
  (``ResNet18_Weights.IMAGENET1K_V1`` for ``resnet18`` / ``resnet18-ws``, likewise 34 and 50);
- ``torchvision:ENUM.ENTRY``, e.g. ``torchvision:ResNet50_Weights.IMAGENET1K_V2``: any entry
  of torchvision's weights enums for that depth;
- a path to a state-dict file in torchvision's key layout (``resnet18-f37072fd.pth``).

Named weights are the file torchvision's own ``resnet18(weights=...)`` uses: it lives in the
torch hub cache (``$TORCH_HOME/hub/checkpoints/``, by default ``~/.cache/torch/hub``). When the
file is there it is read from there (an offline machine with a filled or copied cache works);
otherwise it is downloaded there once, its SHA-256 prefix checked as torch hub does. Every
failure is one line naming the cache file and the URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from jtsm.errors import ConfigError, DataError

__all__ = ["IMAGENET", "hub_file", "resolve_weights", "weights_entry"]

#: The ImageNet entry ``backbone.weights = "imagenet"`` means, by ResNet depth (the classic
#: weights the paper's and detectron2's recipes start from).
IMAGENET = {18: "ResNet18_Weights.IMAGENET1K_V1", 34: "ResNet34_Weights.IMAGENET1K_V1",
            50: "ResNet50_Weights.IMAGENET1K_V1"}

_PREFIX = "torchvision:"


def _depth(backbone: str) -> int:
    digits = "".join(c for c in backbone.split("-")[0] if c.isdigit())
    if not backbone.startswith("resnet") or not digits:
        raise ConfigError(f"backbone.name={backbone!r} has no pretrained weights; "
                          "backbone.weights needs a resnet18|34|50 backbone")
    return int(digits)


def is_named(spec: str) -> bool:
    """Whether ``spec`` names torchvision weights (``imagenet`` / ``torchvision:...``) rather
    than a file."""
    return spec.strip().lower() == "imagenet" or spec.strip().startswith(_PREFIX)


def weights_entry(spec: str, backbone: str) -> torchvision.models.WeightsEnum:
    """The torchvision weights entry a named ``spec`` means for ``backbone``.

    Raises:
        ConfigError: an unknown entry, or one made for another depth than the backbone's.
    """
    depth = _depth(backbone)
    name = IMAGENET[depth] if spec.strip().lower() == "imagenet" else spec.strip()[len(_PREFIX):]
    try:
        entry = torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(f"backbone.weights={spec!r}: torchvision has no weights {name!r} "
                          f"(e.g. {IMAGENET[depth]})") from None
    if not type(entry).__name__.startswith(f"ResNet{depth}_"):
        raise ConfigError(f"backbone.weights={spec!r} are {type(entry).__name__}'s, "
                          f"not for backbone.name={backbone!r} (e.g. {IMAGENET[depth]})")
    return entry


def hub_file(entry: torchvision.models.WeightsEnum) -> Path:
    """Where torch hub keeps ``entry``'s file: ``<hub dir>/checkpoints/<file name of its
    URL>``, the path torchvision's own loader reads and writes."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(entry.url).path)


def _hash_prefix(file: Path) -> str | None:
    """The SHA-256 prefix torch hub reads from a file name such as ``resnet18-f37072fd.pth``."""
    match = torch.hub.HASH_REGEX.search(file.name)
    return match.group(1) if match else None


def _download(url: str, file: Path) -> None:
    """Download ``url`` into ``file`` (the torch hub cache), its hash checked; one line on
    failure naming both."""
    file.parent.mkdir(parents=True, exist_ok=True)
    print(f"Downloading ImageNet weights {url} -> {file}", file=sys.stderr, flush=True)
    try:
        torch.hub.download_url_to_file(url, str(file), _hash_prefix(file),
                                       progress=sys.stderr.isatty())
    except Exception as exc:  # noqa: BLE001 - offline, refused, a proxy page, a bad hash
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"ImageNet weights: {file} is not there and downloading {url} failed ({reason:.120}); "
            "copy that file there (TORCH_HOME moves the cache), or give backbone.weights a "
            "file path") from None


def resolve_weights(spec: str, backbone: str, download: bool = True) -> Path | None:
    """The file ``backbone.weights = spec`` stands for (``None`` for ``""``: from scratch).

    Named weights are taken from the torch hub cache, downloaded there first when missing and
    ``download`` is true (see the module docstring).

    Raises:
        ConfigError: a name torchvision does not have, or for another depth.
        DataError: a missing file, or a download that failed (one line naming the cache file
            and the URL).
    """
    spec = spec.strip()
    if not spec:
        return None
    if not is_named(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DataError(f"backbone.weights={spec!r}: no such file (or name torchvision's "
                            "weights: backbone.weights=imagenet)")
        return path
    entry = weights_entry(spec, backbone)
    file = hub_file(entry)
    if not file.is_file():
        if not download:
            raise DataError(f"ImageNet weights: {file} is not there (it comes from {entry.url})")
        _download(entry.url, file)
    return file
