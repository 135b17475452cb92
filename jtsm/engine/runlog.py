"""Training logs a person (or a cluster scheduler's log file) can read: plain progress lines.

Every ``solver.log_period`` iterations (and at the last one) a training stage gives one line::

    2026-12-06 21:40:12 mine 20/200 loss 1.2345 (mil 0.9000, refine 0.3345) lr 0.0100 \
2.31 it/s ETA 0:01:17

which :class:`RunLog` appends to ``RUN/log.txt`` and hands to the caller (the CLI prints it on
stderr when that is not a terminal). When the ``tensorboard`` package is installed
(``pip install jtsm[tb]``), the same scalars as ``metrics.jsonl`` also go to TensorBoard event
files in ``RUN/tensorboard/``.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from typing import Any

from jtsm.fileio import append_line
from jtsm.rundir.layout import RunDir

__all__ = ["RunLog", "format_eta", "progress_line", "write_log_line"]

_NOT_SCALARS = ("stage", "iteration", "max_iter", "seconds")
_NOT_TERMS = (*_NOT_SCALARS, "lr", "loss")


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (``-`` when unknown)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "-"
    return str(datetime.timedelta(seconds=round(seconds)))


def progress_line(rec: dict[str, Any], its: float) -> str:
    """One plain line for a metrics record: time, stage, iteration/max, losses, lr, it/s, ETA."""
    terms = ", ".join(f"{k} {float(v):.4f}" for k, v in rec.items()
                      if k not in _NOT_TERMS and isinstance(v, (int, float)))
    left = rec["max_iter"] - rec["iteration"]
    eta = left / its if its > 0 else float("nan")
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (f"{now} {rec['stage']} {rec['iteration']}/{rec['max_iter']} "
            f"loss {float(rec['loss']):.4f}" + (f" ({terms})" if terms else "")
            + f" lr {float(rec['lr']):.4g} {its:.2f} it/s ETA {format_eta(eta)}")


def write_log_line(run_dir: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` to ``RUN/log.txt`` (flushed at once: a killed run keeps its log)."""
    append_line(RunDir(run_dir).log, line)


class RunLog:
    """Progress lines, ``log.txt`` and TensorBoard scalars of one training stage.

    Arguments:
        run_dir: the run folder, or ``None`` to keep nothing on disk (lines are still made).
        start: the iteration the stage starts (or resumes) at.
    """

    def __init__(self, run_dir: str | os.PathLike[str] | None, stage: str, start: int,
                 max_iter: int) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._t = time.perf_counter()
        self._it = start
        self._tb: Any = None
        if self.run_dir is not None:
            how = f"resumed at iteration {start}" if start else "started"
            now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            write_log_line(self.run_dir, f"{now} {stage} {how}, {max_iter} iterations")
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: log.txt and metrics.jsonl only
                pass
            else:
                self._tb = SummaryWriter(str(RunDir(self.run_dir).tensorboard))

    def step(self, rec: dict[str, Any], log: bool) -> str | None:
        """Record an iteration; on a log iteration return its line (also written to
        ``log.txt``) and add its scalars to TensorBoard."""
        if not log:
            return None
        now = time.perf_counter()
        n = rec["iteration"] - self._it
        its = n / (now - self._t) if now > self._t and n > 0 else 0.0
        self._t, self._it = now, rec["iteration"]
        line = progress_line(rec, its)
        if self.run_dir is not None:
            write_log_line(self.run_dir, line)
        if self._tb is not None:
            for k, v in rec.items():
                if k not in _NOT_SCALARS and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{rec['stage']}/{k}", float(v), rec["iteration"])
            self._tb.flush()
        return line

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
