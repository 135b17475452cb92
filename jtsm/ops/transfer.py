"""Host-to-device copies that do not make the host wait for the device.

A plain ``tensor.to("cuda")`` from the host is a blocking copy: the host waits until the
device's queue has run up to it. From page-locked (pinned) memory with ``non_blocking=True``
the copy is queued like a kernel and the host goes on. The loader pins its items' tensors
(:func:`pinned`, on its own threads, only for a CUDA model) and the step moves them with
:func:`to_device`. On a CPU both are no-ops: pinning needs CUDA, and a tensor already on its
device is returned as it is.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["pinned", "to_device"]


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def pinned(tensor: Tensor, device: torch.device | str) -> Tensor:
    """``tensor`` in page-locked memory when it is a host tensor bound for a CUDA ``device``
    (a pinned copy, unless it already is pinned); else ``tensor`` itself."""
    if not _is_cuda(device) or tensor.device.type != "cpu" or tensor.is_pinned():
        return tensor
    return tensor.pin_memory()


def to_device(tensor: Tensor, device: torch.device | str) -> Tensor:
    """``tensor`` on ``device``: itself when it is there already; a host tensor bound for CUDA
    is pinned (:func:`pinned`) and copied with ``non_blocking=True``, which is safe for a
    host-to-device copy (the host may not read the result, only later device work, which the
    stream orders); any other move is a plain ``.to``."""
    device = torch.device(device)
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return pinned(tensor, device).to(device, non_blocking=True)
    return tensor.to(device)
