"""Options and progress shared by the training commands (``mine``, ``refine``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import click

from jtsm.config import Config, load_config
from jtsm_cli.common import rich_progress

if TYPE_CHECKING:
    import torch


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config NAME|PATH`` and ``--set KEY=VALUE`` (repeatable)."""
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set solver.max_iter=200.")(f)
    return click.option("--config", "config_path", metavar="NAME|PATH",
                        help="A preset shipped with jtsm (synth, synth_refine, voc, coco, "
                             "photos, ...: `jtsm config list` lists them, `jtsm config show "
                             "NAME` prints one) or a TOML/JSON/YAML file, over the "
                             "defaults.")(f)


def device_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--device cpu|cuda|cuda:N`` (default: CUDA when available)."""
    return click.option("--device", default="auto", show_default=True, metavar="DEVICE",
                        help="cpu, cuda or cuda:N; auto takes CUDA when there is a GPU.")(f)


def training_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config``, ``--set``, ``--device``, ``--gpus``, ``--nproc``, ``--deterministic``,
    ``--resume``, ``--quiet``."""
    opts = [
        config_option,
        device_option,
        click.option("--gpus", type=click.IntRange(0, 1024), default=0,
                     help="DistributedDataParallel over N GPUs (NCCL), one process each on "
                          "cuda:LOCAL_RANK. Under torchrun the environment decides."),
        click.option("--nproc", type=click.IntRange(1, 1024), default=1,
                     help="N CPU worker processes (gloo), for CPU-only machines."),
        click.option("--deterministic", is_flag=True,
                     help="Deterministic kernels where torch has them "
                          "(torch.use_deterministic_algorithms; on CUDA also "
                          "CUBLAS_WORKSPACE_CONFIG=:4096:8 and cuDNN's deterministic "
                          "algorithms); an op without one warns and runs as usual. Slower on "
                          "a GPU; changes nothing on a CPU, already deterministic. Not part of "
                          "the job: a run resumes with or without it."),
        click.option("--resume", is_flag=True,
                     help="Continue from the run folder's last checkpoint."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def resolve_config(config_path: str | None, overrides: tuple[str, ...]) -> Config:
    return load_config(config_path, list(overrides))


def resume_notice(out: str, resume: bool) -> None:
    """``--resume`` on a folder without a checkpoint: say that training starts from 0 (a run
    interrupted before its first checkpoint, or a folder that never trained)."""
    from jtsm.rundir.layout import RunDir

    folder = RunDir(out).checkpoints
    if resume and not (folder.is_dir() and any(folder.glob("*.pt"))):
        click.echo(f"--resume: {out} has no checkpoint yet; training starts from iteration 0",
                   err=True)


def world(gpus: int, nproc: int, device: str = "auto") -> tuple[int, str, str]:
    """How many local workers, their backend and the device each resolves
    (:func:`jtsm.engine.device.resolve_device`); torchrun's environment takes precedence."""
    import os

    import torch

    wants_cpu = device.strip().lower() == "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1, "env", device
    if gpus:
        if wants_cpu:
            raise click.UsageError("--gpus runs on GPUs; for CPU workers use --nproc")
        if not torch.cuda.is_available():
            raise click.UsageError("--gpus given but no CUDA device is available")
        if gpus > torch.cuda.device_count():
            raise click.UsageError(f"--gpus {gpus}: only {torch.cuda.device_count()} GPUs")
        return gpus, "nccl", "cuda"
    if nproc > 1:
        if device.strip().lower() not in ("auto", "cpu"):
            raise click.UsageError(f"--nproc runs CPU workers, not --device {device}; "
                                   "for GPUs use --gpus N")
        return nproc, "gloo", "cpu"
    return 1, "gloo", device


def start_rank(device: str) -> torch.device:
    """In a worker: join the process group (torchrun's, or the launcher's) and resolve its
    device; a CUDA rank takes ``cuda:LOCAL_RANK``."""
    from jtsm.engine.device import resolve_device
    from jtsm.engine.distributed import init_from_env

    init_from_env("gloo" if device.strip().lower() == "cpu" else None)
    return resolve_device(device)


def rank_backends(device: torch.device, cfg: Config, deterministic: bool
                  ) -> AbstractContextManager[None]:
    """In a worker, around its run: TF32 and ``--deterministic`` as
    :func:`jtsm.engine.device.training_backends` sets them for ``device`` and the config's
    ``backbone.precision``."""
    from jtsm.engine.device import training_backends

    return training_backends(device, cfg.backbone.precision, deterministic)


def run_workers(worker: Callable[..., None], args: tuple[Any, ...], out: str, gpus: int,
                nproc: int, device: str = "auto") -> dict[str, Any]:
    """Run ``worker(*args, device, result_path)`` on every rank (one process, N local workers,
    or torchrun's) and return rank 0's summary with the wall ``seconds``."""
    import os
    import time
    from contextlib import nullcontext

    from jtsm.engine.device import resolve_device
    from jtsm.engine.distributed import launch
    from jtsm.fileio import read_json
    from jtsm.rundir.layout import RunDir
    from jtsm.rundir.lock import folder_lock

    n, backend, device = world(gpus, nproc, device)
    if backend != "env":
        resolve_device(device)  # a device this machine lacks is refused before any work
    t0 = time.perf_counter()
    result = RunDir(out).summary
    full = (*args, device, str(result))
    # one writer per run folder: torchrun's rank 0 or this launcher holds the lock
    with folder_lock(out) if int(os.environ.get("RANK", "0")) == 0 else nullcontext():
        if n > 1:
            launch(worker, n, backend, args=full)
        else:
            worker(*full)
    summary = read_json(result)
    result.unlink(missing_ok=True)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


class TrainProgress:
    """Training progress on stderr: a rich bar per stage on a terminal; otherwise (a scheduler's
    log file, a pipe) the trainer's plain line every ``solver.log_period`` iterations, the
    lines ``RUN/log.txt`` holds. Nothing when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.plain = not quiet and not self.enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> TrainProgress:
        if self.enabled:
            from rich.progress import TextColumn

            self._progress = rich_progress(TextColumn("loss {task.fields[loss]:.4f}"),
                                           TextColumn("{task.fields[speed]}"))
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def __call__(self, rec: dict[str, Any]) -> None:
        if self.plain and rec.get("line"):
            print(rec["line"], file=sys.stderr, flush=True)
        if self._progress is None:
            return
        stage = rec["stage"]
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=rec["max_iter"],
                                                         loss=0.0, speed="")
        speed = f"{1 / rec['seconds']:.2f} it/s" if rec.get("seconds") else ""
        self._progress.update(self._tasks[stage], completed=rec["iteration"],
                              loss=rec["loss"], speed=speed)
