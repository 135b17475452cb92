"""torch.distributed plumbing: one code path for 1 CPU, N local workers, or torchrun.

- Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) the environment decides.
- ``launch(fn, nproc, backend)`` starts ``nproc`` local workers (gloo on CPU, NCCL on GPUs)
  that meet through a FileStore in a temporary folder; ``nproc == 1`` just calls ``fn``
  in this process.
No home-made cluster code: many machines are torchrun's job.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from jtsm.errors import JtsmError
from jtsm.system import available_cores
from jtsm.worker_pool import die_with_parent

__all__ = ["RunningStatsSync", "all_reduce_mean", "barrier", "ddp_wrap", "first_failure",
           "get_rank", "get_world_size", "group_device", "group_timeout", "init_from_env",
           "is_main", "launch"]

#: How long a collective waits for the other ranks (seconds), unless JTSM_DIST_TIMEOUT says.
#: The longest work between two collectives is one rank's share of the scoring after training
#: (:mod:`jtsm.engine.final_scoring`) or one training step, far below this.
DEFAULT_TIMEOUT_S = 1800.0


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def group_timeout() -> timedelta:
    """The process group's timeout: ``JTSM_DIST_TIMEOUT`` seconds, else
    :data:`DEFAULT_TIMEOUT_S` (NCCL's own default, 10 minutes, is shorter than a large
    dataset's scoring on one rank)."""
    raw = os.environ.get("JTSM_DIST_TIMEOUT", "").strip()
    if not raw:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise JtsmError(f"JTSM_DIST_TIMEOUT={raw!r}: want a number of seconds > 0")
    return timedelta(seconds=seconds)


def first_failure(ok: bool, message: str | None) -> str | None:
    """Agree across ranks whether a step failed, before any rank raises.

    Every rank passes whether its own check passed and, if not, its one-line ``message``.
    Returns ``None`` on every rank when all passed; otherwise the message of the lowest
    failing rank (``"rank R: ..."`` on several ranks), the same on every rank, so that all of
    them stop at once with one error instead of the healthy ones blocking in the next
    collective until the timeout.
    """
    world = get_world_size()
    if world == 1:
        return None if ok else message
    flags = torch.zeros(world, dtype=torch.float64, device=group_device())
    flags[get_rank()] = 0.0 if ok else 1.0
    dist.all_reduce(flags)
    failed = torch.nonzero(flags).flatten().tolist()
    if not failed:
        return None
    messages: list[str | None] = [None] * world
    dist.all_gather_object(messages, None if ok else message)
    return f"rank {failed[0]}: {messages[failed[0]]}"


def group_device() -> torch.device:
    """Where the process group's collectives take tensors: the rank's GPU under NCCL (which
    reduces GPU tensors only), else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean of scalar values over all ranks (for logging)."""
    if get_world_size() == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=group_device())
    dist.all_reduce(t)
    t /= get_world_size()
    return dict(zip(keys, t.tolist()))


class RunningStatsSync:
    """BatchNorm running statistics of N workers made equal to one process's.

    One process that loops over a step's items ``j = 0..B-1`` updates a BatchNorm layer's
    running mean (and variance) once per forward, in slot order:
    ``r <- (1 - m) r + m s_j`` (``m`` the momentum, ``s_j`` the batch statistic), so after the
    step ``r = (1 - m)^B r0 + sum_j m (1 - m)^(B-1-j) s_j``. DDP's default instead copies rank
    0's buffers to every rank at each forward, which drops the other ranks' batches. Here each
    rank updates its own copy (:func:`ddp_wrap`: no buffer sync in forward) from the shared
    ``r0``; its ``L_r`` updates give ``r_r = (1 - m)^L_r r0 + (its part of the sum)``, so one
    all-reduce of ``(1 - m)^(updates on later ranks) * (r_r - (1 - m)^L_r r0)`` rebuilds the
    one-process sequence exactly (up to float rounding). ``momentum=None`` (a cumulative average) is
    rebuilt the same way from each rank's count. Layers in eval mode make no updates
    (``L_r = 0``) and stay as they are.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules()
                       if isinstance(m, nn.modules.batchnorm._BatchNorm)
                       and m.track_running_stats and m.running_mean is not None]
        self._r0: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        if get_world_size() > 1:  # DDP without buffer broadcast does not copy them either
            for m in self.layers:
                for b in (m.running_mean, m.running_var, m.num_batches_tracked):
                    dist.broadcast(b, 0)

    def snapshot(self) -> None:
        """Remember every layer's statistics before the step's forwards."""
        if get_world_size() == 1:
            return
        self._r0 = [(m.running_mean.detach().double().clone(),
                     m.running_var.detach().double().clone(), int(m.num_batches_tracked))
                    for m in self.layers]

    def reconcile(self) -> None:
        """After the step's forwards: every rank holds the one-process statistics."""
        world, rank = get_world_size(), get_rank()
        if world == 1 or not self.layers:
            return
        device = self.layers[0].running_mean.device  # NCCL reduces GPU tensors only
        counts = torch.zeros(len(self.layers), world, dtype=torch.float64, device=device)
        for i, (m, (_, _, n0)) in enumerate(zip(self.layers, self._r0)):
            counts[i, rank] = int(m.num_batches_tracked) - n0
        dist.all_reduce(counts)
        parts, plan = [], []
        for i, (m, (mean0, var0, n0)) in enumerate(zip(self.layers, self._r0)):
            n_r, total = float(counts[i, rank]), float(counts[i].sum())
            if total == 0:
                plan.append(None)
                continue
            later = float(counts[i, rank + 1:].sum())
            cur = (m.running_mean.detach().double(), m.running_var.detach().double())
            if m.momentum is None:  # cumulative average over all batches ever seen
                parts += [c * (n0 + n_r) - n0 * c0 for c, c0 in zip(cur, (mean0, var0))]
            else:
                keep = 1.0 - m.momentum
                parts += [(c - keep ** n_r * c0) * keep ** later
                          for c, c0 in zip(cur, (mean0, var0))]
            plan.append((n0, total))
        if not parts:
            return
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        k = 0
        for m, (mean0, var0, _), p in zip(self.layers, self._r0, plan):
            if p is None:
                continue
            n0, total = p
            c = m.running_mean.numel()
            sums = flat[k:k + c], flat[k + c:k + 2 * c]
            k += 2 * c
            for buf, c0, s in zip((m.running_mean, m.running_var), (mean0, var0), sums):
                if m.momentum is None:
                    new = (n0 * c0 + s) / (n0 + total)
                else:
                    new = (1.0 - m.momentum) ** total * c0 + s
                buf.copy_(new.to(buf.dtype))
            m.num_batches_tracked.fill_(n0 + int(total))


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment, if there is one."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend, timeout=group_timeout())
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def _worker(rank: int, fn: Callable[..., Any], nproc: int, backend: str, store_file: str,
            args: tuple[Any, ...], parent: int) -> None:
    """One local worker. The rendezvous is a FileStore, not a TCPStore: a TCPStore's server
    lives in rank 0, and rank 0 leaving while rank 1 still tears down its group is a known
    exit race (seen here once in ~7 CI runs as a SIGABRT of rank 0 after training ended).
    A file has no server thread and no port to race for."""
    die_with_parent(parent)  # no orphan writes checkpoints after `kill -9` of the launcher
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank))
    try:
        dist.init_process_group(backend, init_method=f"file://{store_file}", rank=rank,
                                world_size=nproc, timeout=group_timeout())
        if backend == "nccl":
            torch.cuda.set_device(rank)
        elif "OMP_NUM_THREADS" not in os.environ:  # N CPU workers share the cores
            torch.set_num_threads(max(1, available_cores() // nproc))
        fn(*args)
        dist.barrier()  # every rank's work is done (and its files written) past this point
    except BaseException as e:  # noqa: BLE001 - every failure becomes the launcher's one line
        if not isinstance(e, KeyboardInterrupt):
            _save_error(os.path.dirname(store_file), rank, e)
        # Leave without tearing the group down: destroy_process_group can block under NCCL
        # while another rank sits in a collective. The launcher ends the other ranks and
        # raises this rank's error.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130 if isinstance(e, KeyboardInterrupt) else 1)
    # Leave at once: tearing the group down (destroy_process_group, then C++ destructors at
    # interpreter exit) races between ranks that finish a moment apart, and was seen to abort a
    # finished rank ("terminate called without an active exception", SIGABRT) and so fail a
    # run whose results were all written. The OS closes the sockets and the store file.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _save_error(folder: str, rank: int, error: BaseException) -> None:
    """Keep a worker's error for the launcher: a :class:`JtsmError` as it is (its one line is
    the user's), anything else as one naming the rank and the exception."""
    if not isinstance(error, JtsmError):
        first = (str(error).strip().splitlines() or [""])[0]
        error = JtsmError(f"rank {rank}: {type(error).__name__}: {first}"
                          " (rerun with --nproc 1 --debug for the traceback)")
    tmp = os.path.join(folder, f".error{rank}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(error, f)
    os.replace(tmp, os.path.join(folder, f"error{rank}.pkl"))


def _first_error(folder: str, nproc: int) -> Exception | None:
    for rank in range(nproc):
        path = os.path.join(folder, f"error{rank}.pkl")
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return pickle.load(f)  # our own worker's file in our own temp folder
    return None


def ddp_wrap(model: nn.Module, find_unused: bool) -> nn.Module:
    """DistributedDataParallel that leaves each rank's buffers alone in forward (the
    BatchNorm statistics are merged by :class:`RunningStatsSync` instead)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    if "forward_sync_buffers" in inspect.signature(DDP).parameters:  # torch >= 2.13
        return DDP(model, find_unused_parameters=find_unused, forward_sync_buffers=False)
    return DDP(model, find_unused_parameters=find_unused, broadcast_buffers=False)


def launch(fn: Callable[..., Any], nproc: int, backend: str, args: tuple[Any, ...] = ()) -> None:
    """Run ``fn(*args)`` in ``nproc`` processes of one process group (or inline for 1)."""
    if nproc <= 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="jtsm-dist-") as tmp:
        store_file = os.path.join(tmp, "store")
        # spawn logs "Terminating process ..." for the other ranks when one fails; the failing
        # rank's own error is what the user gets
        logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
        try:
            mp.spawn(_worker, args=(fn, nproc, backend, store_file, args, os.getpid()),
                     nprocs=nproc, join=True)
        except Exception:
            err = _first_error(tmp, nproc)  # a worker's JtsmError, not spawn's wrapper
            if err is None:
                raise
            raise err from None
