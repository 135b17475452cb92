"""torch.distributed plumbing: one code path for 1 CPU, N local workers, or torchrun.

- Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) the environment decides.
- ``launch(fn, nproc, backend)`` starts ``nproc`` local workers (gloo on CPU, NCCL on GPUs)
  that meet through a FileStore in a temporary folder; ``nproc == 1`` just calls ``fn``
  in this process.
No home-made cluster code: many machines are torchrun's job.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_reduce_mean", "barrier", "get_rank", "get_world_size", "init_from_env",
           "is_main", "launch"]


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean of scalar values over all ranks (for logging)."""
    if get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    t /= get_world_size()
    return dict(zip(keys, t.tolist()))


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment, if there is one."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def _worker(rank: int, fn: Callable[..., Any], nproc: int, backend: str, store_file: str,
            args: tuple[Any, ...]) -> None:
    """One local worker. The rendezvous is a FileStore, not a TCPStore: a TCPStore's server
    lives in rank 0, and rank 0 leaving while rank 1 still tears down its group is a known
    exit race (seen here once in ~7 CI runs as a SIGABRT of rank 0 after training ended).
    A file has no server thread and no port to race for."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank))
    dist.init_process_group(backend, init_method=f"file://{store_file}", rank=rank,
                            world_size=nproc)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    try:
        fn(*args)
        dist.barrier()  # nobody tears down while another rank still talks to the group
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], nproc: int, backend: str, args: tuple[Any, ...] = ()) -> None:
    """Run ``fn(*args)`` in ``nproc`` processes of one process group (or inline for 1)."""
    if nproc <= 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="jtsm-dist-") as tmp:
        store_file = os.path.join(tmp, "store")
        mp.spawn(_worker, args=(fn, nproc, backend, store_file, args), nprocs=nproc, join=True)
