"""Options and progress shared by the training commands (``mine``, ``refine``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from jtsm.config import Config, load_config
from jtsm_cli.common import rich_progress


def training_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--config``, ``--set``, ``--gpus``, ``--nproc``, ``--resume``, ``--quiet``."""
    opts = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="A TOML/JSON/YAML config over the defaults (examples/configs/)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config value, e.g. --set solver.max_iter=200."),
        click.option("--gpus", type=click.IntRange(0, 1024), default=0,
                     help="DistributedDataParallel over N GPUs (NCCL)."),
        click.option("--nproc", type=click.IntRange(1, 1024), default=1,
                     help="N CPU worker processes (gloo), for CPU-only machines."),
        click.option("--resume", is_flag=True,
                     help="Continue from the run folder's last checkpoint."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def resolve_config(config_path: str | None, overrides: tuple[str, ...]) -> Config:
    return load_config(config_path, list(overrides))


def world(gpus: int, nproc: int) -> tuple[int, str]:
    """How many local workers, and the backend (torchrun's environment takes precedence)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1, "env"
    if gpus:
        import torch

        if not torch.cuda.is_available():
            raise click.UsageError("--gpus given but no CUDA device is available")
        if gpus > torch.cuda.device_count():
            raise click.UsageError(f"--gpus {gpus}: only {torch.cuda.device_count()} GPUs")
        return gpus, "nccl"
    return nproc, "gloo"


def run_workers(worker: Callable[..., None], args: tuple[Any, ...], out: str, gpus: int,
                nproc: int) -> dict[str, Any]:
    """Run ``worker(*args, result_path)`` on every rank (one process, N local workers, or
    torchrun's) and return rank 0's summary with the wall ``seconds``."""
    import time
    from pathlib import Path

    from jtsm.engine.distributed import launch
    from jtsm.fileio import read_json

    n, backend = world(gpus, nproc)
    t0 = time.perf_counter()
    result = Path(out) / ".summary.json"
    full = (*args, str(result))
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
