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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from jtsm.config import SolverConfig
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
from jtsm.rundir.checkpoint import latest_checkpoint, load_checkpoint, load_state, save_checkpoint
from jtsm.rundir.layout import RunDir

__all__ = ["EvalHook", "HookBase", "MetricsWriter", "PeriodicCheckpointer", "ProgressLog",
           "TrainTask", "Trainer", "TrainingDiverged", "item_seed", "lr_at", "sample_index",
           "train"]


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


class HookBase:
    """Something done around the training steps (detectron2's hooks, smaller).

    :class:`Trainer` sets ``self.trainer`` and calls, on every rank, ``before_train`` once
    (after a resume is loaded), ``after_step`` after each step (``trainer.iter`` is the number
    of iterations done; ``trainer.record`` the step's metrics record on rank 0, else ``None``)
    and ``after_train`` once. A hook with state a resumed run must get back returns it from
    ``state_dict`` (plain values); it is saved in every checkpoint and handed to
    ``load_state_dict`` on resume.
    """

    trainer: Trainer

    def before_train(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class Trainer:
    """The training loop of one stage: the model, its optimiser, the step, and hooks.

    Arguments:
        model: ``model(item) -> {name: scalar loss}`` in train mode (a model with its criterion,
            e.g. :class:`jtsm.engine.mine.MilTrainModule`).
        task: the items (see :class:`TrainTask`).
        solver: schedule, optimiser and batch (``solver.ims_per_batch`` is global: each of N
            ranks takes a contiguous slice of it).
        seed: the seed of every draw (see the module docstring).
        stage: names the stage in checkpoints, metrics and logs.
        find_unused: tell DDP that some parameters may get no gradient in an iteration.
        lr_mults: parameter-name prefix -> learning-rate multiplier (e.g. new heads).

    ``iter`` is the number of iterations done; :meth:`run_step` does the next one.
    """

    def __init__(self, model: nn.Module, task: TrainTask, solver: SolverConfig, seed: int, *,
                 stage: str = "train", find_unused: bool = False,
                 lr_mults: Mapping[str, float] | None = None) -> None:
        world, rank = get_world_size(), get_rank()
        batch = solver.ims_per_batch
        if batch % world:
            raise ConfigError(f"config value solver.ims_per_batch={batch} must be a multiple of "
                              f"the {world} workers")
        if len(task) == 0:
            raise JtsmError("nothing to train on: the dataset has no usable (tagged) images")
        self.model, self.task, self.solver, self.seed, self.stage = (model, task, solver, seed,
                                                                     stage)
        self.find_unused = find_unused
        self.optimizer = _optimizer(model, solver, lr_mults)
        self.local = batch // world
        self.slots = range(rank * self.local, (rank + 1) * self.local)
        self.iter = self.start_iter = 0
        self.max_iter = solver.max_iter
        self.record: dict[str, Any] | None = None
        self.hooks: list[HookBase] = []
        self._items: Iterator[Any] | None = None

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        for h in hooks:
            h.trainer = self
            self.hooks.append(h)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds: model, optimiser, iterations done, the hooks' state."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "iteration": self.iter, "stage": self.stage,
                "hooks": {type(h).__name__: h.state_dict() for h in self.hooks}}

    def load_state_dict(self, state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
        """Continue from a checkpoint (``path`` names it in errors)."""
        load_state(self.model, state["model"], path)
        load_state(self.optimizer, state["optimizer"], path)
        self.iter = self.start_iter = int(state["iteration"])
        hooks = state.get("hooks") or {}
        for h in self.hooks:
            h.load_state_dict(hooks.get(type(h).__name__, {}))

    def train(self) -> nn.Module:
        """Iterations ``iter .. max_iter``; returns the trained model."""
        world = get_world_size()
        self.wrapped: nn.Module = self.model
        if world > 1:  # each rank keeps its own BatchNorm statistics in a step; bn_sync merges
            self.wrapped = ddp_wrap(self.model, self.find_unused)
        self.bn_sync = RunningStatsSync(self.model)
        self.model.train()
        batch, n = self.solver.ims_per_batch, len(self.task)
        keys = ((sample_index(self.seed, n, it * batch + j), item_seed(self.seed, it, j))
                for it in range(self.start_iter, self.max_iter) for j in self.slots)
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        for h in self.hooks:
            h.before_train()
        with Prefetcher(lambda key: _load_item(self.task, *key), keys,
                        loader_threads(self.solver.load_threads, device),
                        ahead=2 * self.local) as items:
            self._items = items
            while self.iter < self.max_iter:
                self.run_step()
                for h in self.hooks:
                    h.after_step()
        for h in self.hooks:
            h.after_train()
        return self.model

    def _checked_losses(self, terms: list[tuple[list[str], torch.Tensor]]) -> dict[str, float]:
        """The step's loss terms read once (one host sync for every term of every item),
        checked finite, and averaged over the rank's items for the log.

        The check is agreed by every rank before any raises: a healthy rank would otherwise
        wait in the gradient all-reduce until the group's timeout.

        Raises:
            TrainingDiverged: a term is NaN or infinite on some rank (the first such rank's
                message on every rank).
        """
        flat = torch.cat([t for _, t in terms]).tolist()
        values, at = [], 0
        for names, t in terms:
            values.append((names, flat[at:at + len(t)]))
            at += len(t)
        bad = _first_bad(values)
        failure = first_failure(bad is None, None if bad is None else (
            f"{self.stage} iteration {self.iter + 1}: loss term {bad[0]!r} is {bad[1]}; "
            "lower solver.lr or check the data (last checkpoint kept)"))
        if failure is not None:
            raise TrainingDiverged(failure)
        logged: dict[str, float] = {}
        for names, vals in values:
            for name, val in zip(names, vals):
                logged[name] = logged.get(name, 0.0) + val / self.local
        return logged

    def run_step(self) -> None:
        """One iteration over the rank's slots of the global batch (gradient accumulation),
        then the optimiser step; sets :attr:`record` on rank 0."""
        assert self._items is not None, "run_step is called by train()"
        world, local, it = get_world_size(), self.local, self.iter
        opt, solver = self.optimizer, self.solver
        lr = lr_at(solver, it)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        opt.zero_grad(set_to_none=True)
        self.bn_sync.snapshot()
        t0 = time.perf_counter()
        terms: list[tuple[list[str], torch.Tensor]] = []  # each item's loss names and values
        logged: dict[str, float] = {}
        for k, j in enumerate(self.slots):
            item = next(self._items)
            torch.manual_seed(item_seed(self.seed, it, j, stream=1))
            last = k == local - 1
            ctx = self.wrapped.no_sync() if (world > 1 and not last) else nullcontext()
            with ctx:
                losses = self.wrapped(item)
                total = sum(losses.values())
                terms.append((list(losses), torch.stack(
                    [v.detach().float().reshape(()) for v in losses.values()])))
                if last:  # before the backward that all-reduces the gradients
                    logged = self._checked_losses(terms)
                (total / local).backward()
        params = self.model.parameters()
        if solver.clip_grad_norm > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(params, solver.clip_grad_norm)
        else:
            grads = [p.grad.detach().norm() for p in params if p.grad is not None]
            gnorm = torch.stack(grads).norm() if grads else torch.zeros(())
        if not torch.isfinite(gnorm):
            raise TrainingDiverged(f"{self.stage} iteration {it + 1}: gradient norm is "
                                   f"{float(gnorm)} (lower solver.lr; last checkpoint kept)")
        opt.step()
        self.bn_sync.reconcile()
        logged = all_reduce_mean(logged)
        self.iter = it + 1
        self.record = ({"stage": self.stage, "iteration": self.iter, "max_iter": self.max_iter,
                        "lr": lr, "loss": sum(logged.values()), **logged,
                        "seconds": time.perf_counter() - t0} if is_main() else None)


def _first_bad(terms: list[tuple[list[str], list[float]]]) -> tuple[str, float] | None:
    return next(((n, v) for names, values in terms for n, v in zip(names, values)
                 if not math.isfinite(v)), None)


def _optimizer(model: nn.Module, solver: SolverConfig,
               lr_mults: Mapping[str, float] | None) -> torch.optim.Optimizer:
    groups = _param_groups(model, solver.weight_decay, lr_mults)
    if solver.optimizer == "adamw":
        try:  # the fused kernel (CPU too, torch >= 2.4) is ~4x faster than the loop
            return torch.optim.AdamW(groups, lr=solver.lr, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(groups, lr=solver.lr)
    return torch.optim.SGD(groups, lr=solver.lr, momentum=solver.momentum)


class PeriodicCheckpointer(HookBase):
    """Rank 0 writes ``RUN/checkpoints/<stage>_<iter>.pt`` every ``solver.checkpoint_period``
    iterations, every ``solver.checkpoint_minutes`` of training and at the last iteration (the
    two newest of the stage kept). The last iteration's checkpoint marks the stage finished;
    the run's weights file (``model_final.pt``) is the stage's caller's to write."""

    def __init__(self, run_dir: Path, config: dict[str, Any] | None) -> None:
        self.run, self.config = RunDir(run_dir), config

    def before_train(self) -> None:
        self._saved = time.perf_counter()

    def after_step(self) -> None:
        t, s = self.trainer, self.trainer.solver
        if not is_main():
            return
        every = s.checkpoint_minutes * 60.0  # 0: by iteration only
        if (t.iter % s.checkpoint_period == 0 or t.iter == t.max_iter
                or 0 < every <= time.perf_counter() - self._saved):
            self.save()
            self._saved = time.perf_counter()

    def save(self) -> None:
        t = self.trainer
        path = self.run.checkpoint(t.stage, t.iter)
        save_checkpoint(path, {**t.state_dict(), "config": json.dumps(self.config or {})})
        atomic_write_bytes(self.run.last_marker(t.stage), path.name.encode())
        for p in self.run.checkpoint_glob(t.stage)[:-2]:  # the two newest are kept
            p.unlink(missing_ok=True)


class MetricsWriter(HookBase):
    """Rank 0 appends the step's record to ``RUN/metrics.jsonl`` every ``solver.log_period``
    iterations and at the last; a resumed run first drops the stage's lines past its start."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).metrics

    def before_train(self) -> None:
        if is_main() and self.trainer.start_iter:
            _trim_metrics(self.path, self.trainer.stage, self.trainer.start_iter)

    def after_step(self) -> None:
        t = self.trainer
        if t.record is not None and _log_now(t):
            append_line(self.path, json.dumps(t.record))


class ProgressLog(HookBase):
    """Rank 0's progress: the plain line every ``solver.log_period`` iterations in
    ``RUN/log.txt`` and TensorBoard (:class:`jtsm.engine.runlog.RunLog`), and every step's
    record (with that line, when there is one) to ``on_log``."""

    def __init__(self, run_dir: Path | None,
                 on_log: Callable[[dict[str, Any]], None] | None) -> None:
        self.run_dir, self.on_log = run_dir, on_log
        self._log: RunLog | None = None

    def before_train(self) -> None:
        t = self.trainer
        self._log = RunLog(self.run_dir if is_main() else None, t.stage, t.start_iter,
                           t.max_iter)

    def after_step(self) -> None:
        t = self.trainer
        if t.record is None or self._log is None:
            return
        line = self._log.step(t.record, _log_now(t))
        if self.on_log is not None:
            self.on_log({**t.record, "line": line} if line is not None else t.record)

    def after_train(self) -> None:
        if self._log is not None:
            self._log.close()


class EvalHook(HookBase):
    """Evaluate every ``period`` iterations and after the last (detectron2's ``EvalHook``):
    ``evaluate(trainer)`` runs on every rank (it may use the group) and returns a dict of
    numbers; rank 0 appends ``{"stage", "iteration", "eval": {...}}`` to ``RUN/metrics.jsonl``
    (when the run has a folder) and hands the dict to ``on_result``. The model is put back in
    train mode after each evaluation.

    Arguments:
        period: iterations between evaluations (0: only after the last).
    """

    def __init__(self, period: int, evaluate: Callable[[Trainer], Mapping[str, float]],
                 run_dir: str | os.PathLike[str] | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> None:
        if period < 0:
            raise ConfigError(f"EvalHook period={period} is out of range (want >= 0)")
        self.period, self.evaluate, self.on_result = period, evaluate, on_result
        self.path = RunDir(run_dir).metrics if run_dir is not None else None
        self.results: list[dict[str, Any]] = []

    def _run(self) -> None:
        t = self.trainer
        result = {k: float(v) for k, v in self.evaluate(t).items()}
        t.model.train()
        if not is_main():
            return
        rec = {"stage": t.stage, "iteration": t.iter, "eval": result}
        self.results.append(rec)
        if self.path is not None:
            append_line(self.path, json.dumps(rec))
        if self.on_result is not None:
            self.on_result(rec)

    def after_step(self) -> None:
        t = self.trainer
        if self.period and t.iter % self.period == 0 and t.iter < t.max_iter:
            self._run()

    def after_train(self) -> None:
        self._run()


def _log_now(t: Trainer) -> bool:
    return t.iter % t.solver.log_period == 0 or t.iter == t.max_iter


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
    find_unused: bool = False,
    lr_mults: Mapping[str, float] | None = None,
    hooks: Sequence[HookBase] = (),
) -> nn.Module:
    """Train ``model`` on ``task`` for ``solver.max_iter`` iterations of ``ims_per_batch`` items:
    a :class:`Trainer` with the run folder's hooks (:class:`PeriodicCheckpointer`,
    :class:`MetricsWriter`, :class:`ProgressLog`) and ``hooks``.

    Arguments:
        run_dir: where checkpoints (``checkpoints/<stage>_<iter>.pt``), ``metrics.jsonl`` and
            ``log.txt`` go (rank 0 writes, :mod:`jtsm.rundir.layout`); ``None`` keeps nothing on
            disk.
        resume: continue from the run's last checkpoint of this stage, if any; a stage that
            had finished is loaded and not trained again (a larger ``solver.max_iter``
            continues it).
        on_log: called on rank 0 after every iteration with ``{"iteration", "max_iter", "lr",
            "loss", <terms>}`` (and ``"line"``, the progress line, on log iterations).
        config: the resolved config, kept in every checkpoint.
        (``model``, ``task``, ``solver``, ``seed``, ``stage``, ``find_unused``, ``lr_mults``:
        see :class:`Trainer`.)
    Returns:
        the trained model (unwrapped).
    Raises:
        TrainingDiverged: a loss term or the gradient is not finite.
    """
    trainer = Trainer(model, task, solver, seed, stage=stage, find_unused=find_unused,
                      lr_mults=lr_mults)
    run = Path(run_dir) if run_dir is not None else None
    # the checkpointer last: a checkpoint holds the state every other hook reached in the
    # step, and the step's log line and metrics record are written before it
    trainer.register_hooks([ProgressLog(run, on_log)])
    if run is not None:
        trainer.register_hooks([MetricsWriter(run)])
    trainer.register_hooks(hooks)
    if run is not None:
        trainer.register_hooks([PeriodicCheckpointer(run, config)])
    if resume and run is not None and _resume(trainer, run):
        return model
    return trainer.train()


def _resume(trainer: Trainer, run: Path) -> bool:
    """Load the run's last checkpoint of the trainer's stage; ``True`` when the stage had
    finished (the checkpoint of its last iteration: its weights are loaded, nothing to train;
    a larger ``solver.max_iter`` continues from it instead)."""
    ck = latest_checkpoint(run, trainer.stage)
    if ck is None:
        return False
    state = load_checkpoint(ck)
    if not {"model", "optimizer", "iteration"} <= set(state):
        raise DataError(f"{ck}: not a training checkpoint (no model/optimizer/iteration)")
    if int(state["iteration"]) >= trainer.solver.max_iter:
        load_state(trainer.model, state["model"], ck)
        return True
    trainer.load_state_dict(state, ck)
    return False


def _load_item(task: TrainTask, index: int, seed: int) -> Any:
    """Item ``index`` of ``task`` drawn with ``seed``."""
    return task.load(index, np.random.default_rng(seed))
