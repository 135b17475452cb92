"""One writer per output folder: a lock file beside it, held while a command writes.

``jtsm`` commands that write a folder ``OUT`` (a run, a proposal store, relabel or predict
outputs, a dataset) first create ``.OUT.lock`` beside it (:func:`jtsm.rundir.layout.lock_path`)
with ``O_EXCL``, holding the writer's pid, its start time and the command line. A second
command into the same ``OUT`` finds it and stops at once with one line naming the holder;
nothing of the first run is touched. A lock left by a process that no longer runs (killed with
``-9``, a machine that rebooted: its pid is gone, or is now another process with another start
time) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jtsm.errors import JtsmError
from jtsm.rundir.layout import lock_path

__all__ = ["FolderLocked", "folder_lock", "process_start_time"]


class FolderLocked(JtsmError):
    """Another running jtsm command writes the folder."""


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since boot, from ``/proc``; ``None`` where
    unknown): with the pid it names one process, whatever pids were reused since."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its ")"
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (ValueError, IndexError, OSError):
        return None


def _alive(holder: dict[str, Any]) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    started, recorded = process_start_time(pid), holder.get("started")
    if started is not None and isinstance(recorded, (int, float)):
        return abs(started - recorded) < 1.0  # else the pid was reused by another process
    return True


def _holder_text(holder: dict[str, Any]) -> str:
    when = holder.get("since")
    since = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
             if isinstance(when, (int, float)) else "an unknown time")
    cmd = holder.get("command")
    what = f" ({cmd[:80]})" if isinstance(cmd, str) and cmd else ""
    return f"pid {holder.get('pid')}, since {since}{what}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # being written this instant, or damaged: treated as its owner's
    return data if isinstance(data, dict) else {}


@contextmanager
def folder_lock(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of folder ``out`` for the block (reentrant within one process).

    Raises:
        FolderLocked: a live process holds it; the message names it and the folder.
    """
    path = lock_path(out)
    me = {"pid": os.getpid(), "started": process_start_time(os.getpid()), "since": time.time(),
          "command": " ".join(os.path.basename(a) if i == 0 else a
                              for i, a in enumerate(sys.argv))}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield path  # an unwritable parent: the command's own write reports it, naming it
        return
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if not holder:  # being written this instant by another command
                time.sleep(0.05)
                holder = _read(path)
            if holder.get("pid") == os.getpid():  # this process holds it already
                yield path
                return
            if holder and _alive(holder):
                raise FolderLocked(f"{out}: another jtsm command is writing it "
                                   f"({_holder_text(holder)}); wait for it to finish, or "
                                   "choose another --out") from None
            path.unlink(missing_ok=True)  # stale: its process is gone (or it was never written)
            continue
        except OSError:
            yield path  # a read-only folder: the command's own write names the fault
            return
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - three stale locks replaced under us in a row
        raise FolderLocked(f"{out}: could not take its lock {path}")
    try:
        yield path
    finally:
        if _read(path).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
