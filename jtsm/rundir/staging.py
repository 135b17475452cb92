"""Outputs replaced as a set: written into a hidden sibling folder, swapped in at the end.

A command whose outputs are several files (``predict``: a json, its PNGs and two result
lists; ``data synth``: images, annotations, PNGs) writes them all into ``.OUT.partial`` beside
``OUT`` and, once every file is written, moves them into ``OUT`` in place of the previous ones.
A run that fails or is killed on the way leaves the previous results whole, and never a stale
file from one run beside new files of another.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jtsm.errors import JtsmError
from jtsm.fileio import write_error
from jtsm.rundir.layout import staging_path
from jtsm.rundir.lock import folder_lock

__all__ = ["staged_folder", "staging_path"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


@contextmanager
def staged_folder(out: str | os.PathLike[str], entries: Iterable[str]) -> Iterator[Path]:
    """Yield an empty staging folder; when the block succeeds, its ``entries`` (names of files
    or folders) replace those of ``out``; any other entry of ``out`` is left alone. When the
    block fails, the staging folder is removed and ``out`` is untouched.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise JtsmError(f"{out}: exists and is not a folder")
    stage = staging_path(out)
    with folder_lock(out):  # one writer: two would share the staging folder
        _remove(stage)  # left by a killed run
        try:
            stage.mkdir(parents=True)
        except OSError as exc:
            raise write_error(stage, exc) from None
        try:
            yield stage
        except BaseException:
            _remove(stage)
            raise
        swap_in(stage, out, entries)


def swap_in(stage: Path, out: Path, entries: Iterable[str]) -> None:
    """Move ``entries`` of ``stage`` into ``out``, the old ones out of the way first (renames
    within one file system), then remove the old ones and ``stage``."""
    old = out.parent / f".{out.name}.old"
    _remove(old)
    try:
        out.mkdir(parents=True, exist_ok=True)
        old.mkdir()
        names = list(entries)
        for name in names:
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, old / name)
        for name in names:
            if (stage / name).exists():
                os.replace(stage / name, out / name)
    except OSError as exc:
        raise write_error(out, exc) from None
    _remove(old)
    _remove(stage)
