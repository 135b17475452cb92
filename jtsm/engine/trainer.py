"""The training loop shared by ``jtsm mine`` and ``jtsm refine``.

Determinism is by construction, not by saved RNG state: everything random in iteration ``it``
for the ``j``-th image of the global batch (which image, its augmentation, dropout) is drawn
from generators seeded by ``(seed, it, j)``. Hence

- ``--resume`` after a kill continues bit-identically (the checkpoint holds model, optimiser
  and iteration; the learning rate is a pure function of the iteration);
- N DDP workers, each taking a contiguous slice of the global batch, compute the same
  gradients as one process looping over the whole batch (gradient accumulation), up to float
  summation order, and :class:`~jtsm.engine.distributed.RunningStatsSync` gives their
  BatchNorm statistics the one-process values after every step.

A model for this loop maps one training item to a dict of scalar loss tensors in ``forward``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from jtsm.config import SolverConfig
from jtsm.engine.checkpoint import (
    last_marker,
    latest_checkpoint,
    load_checkpoint,
    load_state,
    save_checkpoint,
)
from jtsm.engine.distributed import (
    RunningStatsSync,
    all_reduce_mean,
    ddp_wrap,
    first_failure,
    get_rank,
    get_world_size,
    is_main,
)
from jtsm.engine.loader import Prefetcher, loader_threads
from jtsm.engine.runlog import RunLog
from jtsm.errors import ConfigError, DataError, JtsmError
from jtsm.fileio import append_line, atomic_write_bytes

__all__ = ["TrainTask", "TrainingDiverged", "lr_at", "item_seed", "sample_index", "train"]


class TrainingDiverged(JtsmError):
    """A loss term or the gradient became NaN/inf; the last checkpoint is left intact."""


class TrainTask(Protocol):
    """What the loop trains on: ``len(task)`` items; ``task.load(i, rng)`` one augmented item."""

    def __len__(self) -> int: ...

    def load(self, index: int, rng: np.random.Generator) -> Any: ...


def item_seed(seed: int, iteration: int, slot: int, stream: int = 0) -> int:
    """A 63-bit seed for the ``slot``-th item of iteration ``iteration`` (one per stream)."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(iteration), int(slot), stream])
    return int(ss.generate_state(2, np.uint64)[0] >> np.uint64(1))


def sample_index(seed: int, n: int, position: int) -> int:
    """Dataset index at global ``position`` of an endless sequence of shuffled epochs."""
    epoch, offset = divmod(position, n)
    perm = np.random.default_rng([int(seed) & 0xFFFFFFFF, epoch, 99]).permutation(n)
    return int(perm[offset])


def lr_at(solver: SolverConfig, iteration: int) -> float:
    """Learning rate at ``iteration``: linear warmup, then x gamma at each of ``steps``."""
    lr = solver.lr * solver.gamma ** sum(1 for s in solver.steps if iteration >= s)
    if iteration < solver.warmup_iters:
        alpha = iteration / max(solver.warmup_iters, 1)
        lr *= solver.warmup_factor * (1 - alpha) + alpha
    return lr


def _param_groups(model: nn.Module, weight_decay: float,
                  lr_mults: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Weight decay on weights; none on biases and normalisation parameters. Parameters whose
    name starts with a prefix of ``lr_mults`` get their own groups with that ``lr_mult``."""
    mults = dict(lr_mults or {})
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for mod_name, module in model.named_modules():
        is_norm = isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                                      nn.LayerNorm))
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{mod_name}.{name}" if mod_name else name
            mult = next((m for pre, m in mults.items() if full.startswith(pre)), 1.0)
            groups.setdefault((mult, not (is_norm or name == "bias")), []).append(p)
    out = []
    for (mult, decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                    "lr_mult": mult})
    return out


@dataclass
class _Paths:
    run: Path

    @property
    def checkpoints(self) -> Path:
        return self.run / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.run / "metrics.jsonl"


def _trim_metrics(path: Path, stage: str, upto: int) -> None:
    """Drop the metric lines of ``stage`` past iteration ``upto`` (a resumed run rewrites
    them); lines of other stages (an earlier warm-up) are kept whatever their iteration."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if rec.get("stage") != stage or rec.get("iteration", 0) <= upto:
            keep.append(line)
    atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode())


def train(
    model: nn.Module,
    task: TrainTask,
    solver: SolverConfig,
    seed: int,
    run_dir: str | os.PathLike[str] | None,
    *,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    stage: str = "train",
    on_log: Callable[[dict[str, Any]], None] | None = None,
    frozen: Sequence[str] = (),
    find_unused: bool = False,
    lr_mults: Mapping[str, float] | None = None,
) -> nn.Module:
    """Train ``model`` on ``task`` for ``solver.max_iter`` iterations of ``ims_per_batch`` items.

    Arguments:
        model: ``model(item) -> {name: scalar loss}`` in train mode.
        task: the items (see :class:`TrainTask`).
        run_dir: where checkpoints (``checkpoints/<stage>_<iter>.pt``), ``metrics.jsonl`` and
            ``<stage>_final.pt`` go (rank 0 writes); ``None`` keeps nothing on disk.
        resume: continue from the run's last checkpoint of this stage, if any.
        on_log: called on rank 0 after every iteration with ``{"iteration", "max_iter", "lr",
            "loss", <terms>}``.
        frozen: parameter-name prefixes that receive no updates.
        find_unused: tell DDP that some parameters may get no gradient in an iteration.
        lr_mults: parameter-name prefix -> learning-rate multiplier (e.g. new heads).
    Returns:
        the trained model (unwrapped).
    Raises:
        TrainingDiverged: a loss term or the gradient is not finite.
    """
    world, rank = get_world_size(), get_rank()
    batch = solver.ims_per_batch
    if batch % world:
        raise ConfigError(
            f"config value solver.ims_per_batch={batch} must be a multiple of the {world} workers"
        )
    n = len(task)
    if n == 0:
        raise JtsmError("nothing to train on: the dataset has no usable (tagged) images")
    for name, p in model.named_parameters():
        if any(name.startswith(f) for f in frozen):
            p.requires_grad_(False)
    groups = _param_groups(model, solver.weight_decay, lr_mults)
    if solver.optimizer == "adamw":
        try:  # the fused kernel (CPU too, torch >= 2.4) is ~4x faster than the loop
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=solver.lr, fused=True)
        except (RuntimeError, TypeError):
            opt = torch.optim.AdamW(groups, lr=solver.lr)
    else:
        opt = torch.optim.SGD(groups, lr=solver.lr, momentum=solver.momentum)
    paths = _Paths(Path(run_dir)) if run_dir is not None else None
    start = 0
    if resume and paths is not None:
        final = paths.run / f"{stage}_final.pt"
        ck = latest_checkpoint(paths.run, stage)
        state = load_checkpoint(ck) if ck is not None else None
        if state is not None and not {"model", "optimizer", "iteration"} <= set(state):
            raise DataError(f"{ck}: not a training checkpoint (no model/optimizer/iteration)")
        if final.is_file() and (state is None or int(state["iteration"]) >= solver.max_iter):
            # the stage finished before (a larger solver.max_iter continues from the last
            # checkpoint instead)
            load_state(model, load_checkpoint(final), final)
            return model
        if ck is not None and state is not None:
            load_state(model, state["model"], ck)
            load_state(opt, state["optimizer"], ck)
            start = int(state["iteration"])
            if is_main():
                _trim_metrics(paths.metrics, stage, start)
        elif is_main():
            print(f"--resume: {paths.run} has no {stage} checkpoint yet; {stage} starts from "
                  "iteration 0", file=sys.stderr, flush=True)
    wrapped: nn.Module = model
    if world > 1:  # each rank keeps its own BatchNorm statistics in a step; bn_sync merges
        wrapped = ddp_wrap(model, find_unused)
    bn_sync = RunningStatsSync(model)
    local = batch // world
    slots = range(rank * local, (rank + 1) * local)
    model.train()
    keys = ((sample_index(seed, n, it * batch + j), item_seed(seed, it, j))
            for it in range(start, solver.max_iter) for j in slots)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with Prefetcher(lambda key: _load_item(task, *key), keys,
                    loader_threads(solver.load_threads, device), ahead=2 * local) as items:
        _loop(model, wrapped, items, opt, solver, bn_sync, slots, seed, start, stage, paths,
              config, on_log)
    if paths is not None and is_main():
        save_checkpoint(paths.run / f"{stage}_final.pt", model.state_dict())
    return model


def _load_item(task: TrainTask, index: int, seed: int) -> Any:
    """Item ``index`` of ``task`` drawn with ``seed``."""
    return task.load(index, np.random.default_rng(seed))


def _loop(model: nn.Module, wrapped: nn.Module, items: Iterator[Any], opt: torch.optim.Optimizer,
          solver: SolverConfig, bn_sync: RunningStatsSync, slots: range, seed: int, start: int,
          stage: str, paths: _Paths | None, config: dict[str, Any] | None,
          on_log: Callable[[dict[str, Any]], None] | None) -> None:
    """Iterations ``start .. solver.max_iter`` of :func:`train`, the batch slots' items taken
    from ``items`` in order."""
    world, local = get_world_size(), len(slots)
    t_last = t_saved = time.perf_counter()
    save_every = solver.checkpoint_minutes * 60.0  # 0: by iteration only
    # plain progress lines: RUN/log.txt, TensorBoard when installed, and on_log's "line"
    runlog = RunLog(paths.run if paths is not None and is_main() else None, stage, start,
                    solver.max_iter)
    for it in range(start, solver.max_iter):
        lr = lr_at(solver, it)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        opt.zero_grad(set_to_none=True)
        bn_sync.snapshot()
        logged: dict[str, float] = {}
        for k, j in enumerate(slots):
            item = next(items)
            torch.manual_seed(item_seed(seed, it, j, stream=1))
            sync = k == local - 1
            ctx = wrapped.no_sync() if (world > 1 and not sync) else nullcontext()
            with ctx:
                losses = wrapped(item)
                total = sum(losses.values())
                values = torch.stack([v.detach().float().reshape(()) for v in losses.values()]
                                     ).tolist()  # one host sync for every term
                bad = next(((n, v) for n, v in zip(losses, values) if not math.isfinite(v)),
                           None)
                # agreed by every rank before any raises: a healthy rank would otherwise wait
                # in the gradient all-reduce until the group's timeout
                failure = first_failure(bad is None, None if bad is None else (
                    f"{stage} iteration {it + 1}: loss term {bad[0]!r} is {bad[1]}; "
                    "lower solver.lr or check the data (last checkpoint kept)"))
                if failure is not None:
                    raise TrainingDiverged(failure)
                for name, val in zip(losses, values):
                    logged[name] = logged.get(name, 0.0) + val / local
                (total / local).backward()
        if solver.clip_grad_norm > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), solver.clip_grad_norm)
        else:
            grads = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
            gnorm = torch.stack(grads).norm() if grads else torch.zeros(())
        if not torch.isfinite(gnorm):
            raise TrainingDiverged(
                f"{stage} iteration {it + 1}: gradient norm is {float(gnorm)} "
                f"(lower solver.lr; last checkpoint kept)"
            )
        opt.step()
        bn_sync.reconcile()
        logged = all_reduce_mean(logged)
        done = it + 1
        if is_main():
            now = time.perf_counter()
            rec = {"stage": stage, "iteration": done, "max_iter": solver.max_iter, "lr": lr,
                   "loss": sum(logged.values()), **logged, "seconds": now - t_last}
            t_last = now
            line = runlog.step(rec, done % solver.log_period == 0 or done == solver.max_iter)
            if on_log is not None:
                on_log({**rec, "line": line} if line is not None else rec)
            if paths is not None and (done % solver.log_period == 0 or done == solver.max_iter):
                append_line(paths.metrics, json.dumps(rec))
            if paths is not None and (done % solver.checkpoint_period == 0
                                      or done == solver.max_iter
                                      or 0 < save_every <= now - t_saved):
                _save(paths, stage, done, model, opt, config)
                t_saved = time.perf_counter()
    runlog.close()


def _save(paths: _Paths, stage: str, done: int, model: nn.Module, opt: torch.optim.Optimizer,
          config: dict[str, Any] | None) -> None:
    name = f"{stage}_{done:07d}.pt"
    save_checkpoint(paths.checkpoints / name, {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": done,
        "stage": stage, "config": json.dumps(config or {}),
    })
    atomic_write_bytes(paths.checkpoints / last_marker(stage), name.encode())
    # keep the two newest checkpoints of the stage
    old = sorted(paths.checkpoints.glob(f"{stage}_*.pt"))[:-2]
    for p in old:
        p.unlink(missing_ok=True)
