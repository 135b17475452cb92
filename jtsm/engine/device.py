"""Which device a stage runs on: ``--device cpu|cuda|cuda:N``, or CUDA when there is one.

In a process group on GPUs (``--gpus N`` or ``torchrun``) every rank takes
``cuda:LOCAL_RANK``, whatever ``--device`` names.
"""

from __future__ import annotations

import os

import torch

from jtsm.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(spec: str | None = None) -> torch.device:
    """``None``/``""``/``"auto"``: ``cuda`` when available, else ``cpu``; ``cpu``; ``cuda``;
    ``cuda:N``. A CUDA rank of a process group gets ``cuda:LOCAL_RANK``.

    Raises:
        ConfigError: an unknown name, or a CUDA device that this machine does not have.
    """
    name = (spec or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {spec}: unknown device (use cpu, cuda or cuda:N)") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ConfigError(f"--device {spec}: unsupported device type (use cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: no CUDA device is available on this machine "
                          "(use --device cpu)")
    if "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    index = 0 if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)
