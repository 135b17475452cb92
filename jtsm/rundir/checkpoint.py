"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A training checkpoint is ``{"model", "optimizer", "iteration", "config", "extra"}`` of tensors and
plain values only, so loading a file from elsewhere runs no code. A run's weights file
(``model_final.pt``) is a bare state dict.
"""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from jtsm.errors import DataError
from jtsm.fileio import atomic_path, write_error
from jtsm.rundir.layout import RunDir

__all__ = ["copy_stage", "latest_checkpoint", "load_checkpoint", "load_state", "save_checkpoint"]

def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file and rename (a kill never leaves a partial file); a failed
    write (disk full) raises :class:`JtsmError` naming ``path``, not torch's C++ message."""
    with atomic_path(path, suffix=".pt") as tmp:
        try:
            # through a Python file, whose failed write raises OSError with its errno (ENOSPC:
            # "No space left on device"); torch's own writer says "unexpected pos 704 vs 598"
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        except RuntimeError as exc:  # torch reports a short write as inline_container.cc ...
            raise write_error(path, OSError(_torch_write_reason(exc))) from None


def _torch_write_reason(exc: RuntimeError) -> str:
    """The part of torch's serialisation error a user can act on: a write torch saw fail
    (``unexpected pos``, ``iostream error``, ``file write failed``) is a full disk, most
    likely."""
    text = str(exc)
    for needle in ("No space left", "File too large", "Permission denied"):
        if needle.lower() in text.lower():
            return needle
    return "write failed (disk full?)"


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load weights-only; refuse files that hold pickled code, name the file on any fault."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; the line that says what was refused is enough
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "unsupported" in ln.lower()
                    or "unpickler" in ln.lower()), lines[0] if lines else "")
        raise DataError(f"{path}: refused: not a weights-only checkpoint ({why[:160]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0].split(". ")[0][:120] if str(exc).strip() else ""
        raise DataError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a checkpoint (expected a dict, got {type(obj).__name__})")
    return obj


def load_state(target: Any, state: Any, path: str | os.PathLike[str]) -> None:
    """``target.load_state_dict(state)`` (a module or an optimiser); a state that does not fit
    (another config, another model) raises :class:`DataError` naming the file it came from."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        why = " ".join(lines[:2])[:240] or type(exc).__name__
        what = "weights" if isinstance(target, torch.nn.Module) else "optimiser state"
        raise DataError(f"{path}: {what} do not fit the model of this config ({why})") from None


def latest_checkpoint(run_dir: str | os.PathLike[str], stage: str) -> Path | None:
    """The newest checkpoint of a run's stage, from ``checkpoints/last_<stage>``."""
    run = RunDir(run_dir)
    ck, marker = run.checkpoints, run.last_marker(stage)
    if not marker.is_file():
        return None
    try:
        name = marker.read_text().strip()
    except UnicodeDecodeError:
        raise DataError(f"{marker}: corrupt checkpoint marker (not a file name)") from None
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"{marker}: corrupt checkpoint marker ({name[:60]!r} is not a file name)")
    path = ck / name
    return path if path.is_file() else None


def copy_stage(source: str | os.PathLike[str], target: str | os.PathLike[str],
               stage: str) -> Path:
    """Copy the newest checkpoint of ``stage`` (and its marker) from run ``source`` into run
    ``target``, so that ``target`` resumed takes the stage as done where ``source`` left it
    (benchmarks share one tag warm-up between runs this way). Returns the copied file.

    Raises:
        DataError: ``source`` has no checkpoint of ``stage``.
    """
    src, dst = RunDir(source), RunDir(target)
    ck = latest_checkpoint(src.path, stage)
    if ck is None:
        raise DataError(f"{src.checkpoints}: no {stage} checkpoint to copy")
    dst.checkpoints.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst.checkpoints / ck.name, suffix=".pt") as tmp:
        shutil.copyfile(ck, tmp)
    with atomic_path(dst.last_marker(stage)) as tmp:
        Path(tmp).write_text(ck.name)
    return dst.checkpoints / ck.name
