"""Compute precision of the model: float32, or bfloat16 autocast.

``backbone.precision`` chooses it: ``fp32``; ``bf16`` (``torch.autocast`` with bfloat16:
convolutions and matrix products in bfloat16, weights, statistics and gradients' accumulation
in float32); ``auto``: ``bf16`` where it is faster: a CPU with AMX tiles (oneDNN's bf16
matrix units; a tag warm-up step 0.64x the fp32 time, ``benchmarks/bench_warmup_step.py
--bf16``) or a CUDA GPU that supports bf16; else ``fp32`` (on a CPU with AVX-512 BF16 but no
AMX the same step took 1.16x the fp32 time).

What runs in the compute dtype: the backbone and the refinement branches' conv heads (through
:func:`run_module`, which hands their outputs on as float32) and the mining head's fully
connected layers (under :func:`autocast`, their logits cast to float32 before any softmax).
What stays float32 whatever the setting: the pooling (MoIPool / RoIPool / RoIAlign read the
float32 features), the softmaxes of Eq. 2, every loss and its reduction, the weights and
their gradients.
"""

from __future__ import annotations

import contextlib
from functools import cache

import torch
from torch import Tensor, nn

from jtsm.config import PRECISIONS
from jtsm.errors import ConfigError

__all__ = ["PRECISIONS", "autocast", "bf16_supported", "compute_dtype", "run_module"]


@cache
def bf16_supported(device_type: str) -> bool:
    """Whether ``device_type`` (``"cpu"``, ``"cuda"``) runs bfloat16 convolutions faster than
    float32: CUDA with bf16 support; a CPU with AMX tiles and oneDNN."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch >= 2.3
        try:
            return bool(amx is not None and amx() and torch.backends.mkldnn.is_available())
        except RuntimeError:
            return False
    return False


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype ``precision`` (one of :data:`PRECISIONS`) means on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and bf16_supported(kind)):
        return torch.bfloat16
    return torch.float32


def autocast(precision: str, device: torch.device | str
             ) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` in ``precision``'s dtype on ``device``'s type; nothing (a null
    context) where that dtype is float32."""
    dtype = compute_dtype(precision, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def run_module(module: nn.Module, x: Tensor, precision: str) -> Tensor:
    """``module(x)`` under ``precision``'s autocast; the result as float32 (shape unchanged)."""
    if compute_dtype(precision, x.device) == torch.float32:
        return module(x)
    with autocast(precision, x.device):
        y = module(x)
    return y.float()
