"""Which device a stage runs on, and how torch's kernels are set up there for training.

:func:`resolve_device`: ``--device cpu|cuda|cuda:N``, or CUDA when there is one. In a process
group on GPUs (``--gpus N`` or ``torchrun``) every rank takes ``cuda:LOCAL_RANK``, whatever
``--device`` names.

:func:`training_backends`: what a training worker (``jtsm mine``, ``jtsm refine``, each rank)
sets for the length of its run, and restores after:

- **TF32** (CUDA only): with ``backbone.precision`` resolving to float32, float32 matrix
  products and cuDNN convolutions may use TF32 tensor cores (``torch.backends.cuda.matmul
  .allow_tf32``, ``torch.backends.cudnn.allow_tf32``: a 10-bit mantissa in the products, float32
  accumulation; Ampere and newer, ignored on older GPUs). With bf16 those run in bfloat16 under
  autocast anyway, and what stays float32 (pooling, losses) keeps full float32: TF32 off.
  ``JTSM_TF32=0`` keeps full float32 everywhere (to compare a GPU run with a CPU one). A CPU
  never uses TF32.
- **Determinism** (``--deterministic``): ``torch.use_deterministic_algorithms(True,
  warn_only=True)``, and on CUDA ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS's reproducible
  workspaces, set before the worker's first matrix product) and cuDNN's deterministic
  algorithms with its autotuner off (``cudnn.benchmark``, which jtsm never turns on: image
  sizes change every step). An operation that has no deterministic CUDA kernel warns (once,
  naming it) and runs as usual instead of stopping the run: torchvision's RoIAlign and RoIPool
  backward, the bilinear upsampling backward of the semantic branch, the 2-d cross-entropy of
  its loss (``docs/gpus.md``, "Determinism"). On a CPU torch's kernels already give the same
  bits for the same inputs and thread count: there it changes nothing but a little speed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from jtsm.errors import ConfigError

__all__ = ["CUBLAS_DETERMINISTIC", "resolve_device", "tf32_allowed", "training_backends"]

#: The ``CUBLAS_WORKSPACE_CONFIG`` values under which cuBLAS is reproducible (the first is set).
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")


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


def tf32_allowed(device: torch.device, precision: str) -> bool:
    """Whether a training run on ``device`` in ``precision`` (``backbone.precision``) lets
    float32 matrix products and convolutions use TF32: on CUDA when ``precision`` resolves to
    float32, unless ``JTSM_TF32=0``.

    Raises:
        ConfigError: ``JTSM_TF32`` other than ``0`` or ``1``.
    """
    from jtsm.modeling.precision import compute_dtype

    raw = os.environ.get("JTSM_TF32", "").strip()
    if raw not in ("", "0", "1"):
        raise ConfigError(f"JTSM_TF32={raw!r}: want 1 (TF32 on CUDA with fp32, the default) "
                          "or 0 (full float32)")
    return (device.type == "cuda" and raw != "0"
            and compute_dtype(precision, device) == torch.float32)


@contextlib.contextmanager
def training_backends(device: torch.device, precision: str = "fp32",
                      deterministic: bool = False) -> Iterator[None]:
    """Set torch's backends for a training run on ``device`` (see the module docstring),
    and restore what was set before on exit (a run inside a longer process leaves it as it
    found it)."""
    cuda = device.type == "cuda"
    tf32 = tf32_allowed(device, precision)
    saved_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    saved_mode = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = torch.backends.cudnn
    saved_cudnn = (cudnn.deterministic, cudnn.benchmark)
    saved_tf32 = _tf32_flags() if cuda else None
    try:
        if cuda and saved_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            cudnn.allow_tf32 = tf32
        if deterministic:
            if cuda:
                if saved_env not in CUBLAS_DETERMINISTIC:
                    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC[0]
                cudnn.deterministic, cudnn.benchmark = True, False
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(saved_mode[0], warn_only=saved_mode[1])
        cudnn.deterministic, cudnn.benchmark = saved_cudnn
        if saved_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32 = saved_tf32
        if saved_env is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_env


def _tf32_flags() -> tuple[bool, bool] | None:
    """torch's TF32 switches (matmul, cuDNN), or ``None`` where they were set through torch's
    newer ``fp32_precision`` settings (which the legacy flags cannot read back: those
    settings are then left as they are)."""
    try:
        return bool(torch.backends.cuda.matmul.allow_tf32), bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return None
