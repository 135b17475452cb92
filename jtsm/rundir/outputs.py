"""Where a command may write, decided before it does any work.

Every command that writes where ``--out`` (or ``OUT``) says follows three rules:

1. **Apart from its inputs** (:func:`check_apart`): an out path equal to, inside, or containing
   an input file or folder is refused with one line naming both.
2. **Into a folder it owns** (:class:`OutputFolder`): a new or empty folder, or one holding its
   own earlier output, recognised by the record ``OUT/.jtsm-<command>`` it left there (the
   files it wrote, each with its size and modification time). A folder holding anything else
   is refused unless ``--overwrite``.
3. **Never over what it did not write**: a file of an output's name that the command did not
   write (not in its record, or changed since it wrote it) is replaced only with
   ``--overwrite``; a file it did not write is never removed, ``--overwrite`` or not. A
   single output file (:func:`check_replace_file`) is replaced when the command recognises it
   as its own unchanged output, or with ``--overwrite``.

The outputs are written into the hidden sibling ``.OUT.partial``
(:func:`jtsm.rundir.layout.staging_path`) and moved in when the work is done: the files of the
previous output that the new one lacks are removed, the others replaced, so a folder never holds
the files of two runs, and a failed or killed run leaves the previous output whole. The record
names old and new files while they are moved, so even a kill half-way through the move leaves
every file it wrote recognisable.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Union

from jtsm.errors import DataError, JtsmError
from jtsm.fileio import atomic_write_json, make_folder, write_error
from jtsm.rundir.layout import output_record, staging_path

__all__ = ["OutputFolder", "check_apart", "check_replace_file", "record_name"]

PathLike = Union[str, "os.PathLike[str]"]
#: One input: a path, several (a folder and the images it lists), or ``None`` (not given).
Input = Union[PathLike, Iterable[PathLike], None]


def _paths(value: Input) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def check_apart(out: PathLike, inputs: Mapping[str, Input], option: str = "--out") -> None:
    """Refuse an output path equal to, inside, or containing an input.

    Arguments:
        out: the file or folder the command writes.
        inputs: ``{option naming the input: its path(s)}``, e.g. ``{"--images": "photos",
            "--panoptic": ["pred/panoptic.json", "pred/panoptic"]}``; ``None`` is skipped.
        option: how the command names ``out`` in its message.

    Raises:
        JtsmError: ``--out OUT is the input --images DIR: writing there would replace what
            this command reads; choose another --out`` (``is inside``, ``contains``).
    """
    o = Path(out).resolve()
    for name, value in inputs.items():
        for path in _paths(value):
            p = path.resolve()
            if o == p:
                rel = "is"
            elif p in o.parents:
                rel = "is inside"
            elif o in p.parents:
                rel = "contains"
            else:
                continue
            raise JtsmError(f"{option} {out} {rel} the input {name} {path}: writing there "
                            f"would replace what this command reads; choose another {option}")


def check_replace_file(out: PathLike, overwrite: bool,
                       why_not_own: Callable[[Path], str | None]) -> None:
    """Refuse to replace an existing file ``out`` that the command did not write.

    ``why_not_own(path)`` returns ``None`` when the file is the command's own unchanged
    output, else a phrase saying why it is not (``"was not written by jtsm data tags"``).

    Raises:
        JtsmError: ``OUT: exists and <why>; --overwrite replaces it (or choose another --out)``;
            ``OUT`` being a folder is refused, ``--overwrite`` or not.
    """
    path = Path(out)
    if path.is_dir():
        raise JtsmError(f"{path}: is a folder; --out names the file to write")
    if overwrite or not (path.exists() or path.is_symlink()):
        return
    why = why_not_own(path)
    if why is not None:
        raise JtsmError(f"{path}: exists and {why}; --overwrite replaces it (or choose another "
                        "--out)")


def record_name(command: str) -> str:
    """The name of the record a command leaves in its output folder
    (:func:`jtsm.rundir.layout.output_record`): ``.jtsm-viz``,
    ``.jtsm-synth`` (its last word; neither a ``.png`` nor a ``.json``, so no output of an
    image can be named so)."""
    return output_record(command)


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_record(path: Path) -> dict[str, list[list[int]]] | None:
    """``{name: [[size, mtime_ns], ...]}`` of a record, ``None`` when there is none or it is
    not one (a file of that name the user wrote counts as no record)."""
    try:
        d = json.loads(path.read_bytes())
        files = d["files"]
        return {str(k): [[int(a), int(b)] for a, b in v] for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _relative(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataError(f"output name {name!r} must stay inside its folder")
    return p.as_posix()


class OutputFolder:
    """A command's output folder, checked by :meth:`claim` before any work and written through
    :meth:`staged` (see the module docstring).

    Attributes:
        out: the folder.
        command: the command's name in messages (``"viz"``, ``"data synth"``).
        own: files of the folder that the command wrote and that are unchanged since, by name
            relative to ``out`` (their ``[size, mtime_ns]`` as written).
    """

    def __init__(self, out: Path, command: str, overwrite: bool,
                 own: Mapping[str, list[list[int]]]) -> None:
        self.out, self.command, self.overwrite = out, command, overwrite
        self.own = dict(own)

    @property
    def record(self) -> Path:
        """The folder's record of what the command wrote."""
        return self.out / record_name(self.command)

    @classmethod
    def claim(cls, out: PathLike, command: str, names: Iterable[str],
              overwrite: bool = False) -> OutputFolder:
        """Check that ``command`` may write the files ``names`` (relative to ``out``).

        Raises:
            JtsmError: ``out`` is a file; it holds files the command did not write and has no
                record of the command (unless ``overwrite``); a file of one of ``names`` that
                the command did not write (unless ``overwrite``); a folder, a link or a file
                of another's making where an output or its folder goes (always).
        """
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise JtsmError(f"{out}: exists and is not a folder")
        recorded = _read_record(out / record_name(command)) if out.is_dir() else None
        own = {}
        for name, stats in (recorded or {}).items():
            now = _stat(out / name)
            if now is not None and now in stats:
                own[name] = [now]
        if recorded is None and out.is_dir() and not overwrite:
            found = sorted(p.name for p in out.iterdir())
            if found:
                shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more"
                                                if len(found) > 3 else "")
                raise JtsmError(
                    f"{out}: holds files jtsm {command} did not write ({shown}); it writes only "
                    f"into a new folder or one it made: choose another folder, or --overwrite "
                    "to write into this one (files of its outputs' names are replaced, the "
                    "others kept)")
        folder = cls(out, command, overwrite, own)
        if out.is_dir():  # a new folder holds nothing to check against
            folder.check(names)
        return folder

    def check(self, names: Iterable[str]) -> None:
        """Refuse writing ``names`` over what the command did not write (see :meth:`claim`)."""
        folders: set[str] = set()
        for name in names:
            name = _relative(name)
            parts = name.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder in folders:
                    continue
                folders.add(folder)
                p = self.out / folder
                if p.is_symlink() or (p.exists() and not p.is_dir() and folder not in self.own):
                    raise JtsmError(f"{p}: a {'link' if p.is_symlink() else 'file'} where the "
                                    f"output {self.out / name} needs a folder; move it or "
                                    "choose another folder")
            p = self.out / name
            if p.is_dir() and not p.is_symlink():
                raise JtsmError(f"{p}: a folder where an output file goes; move it or choose "
                                "another folder")
            if (p.exists() or p.is_symlink()) and name not in self.own and not self.overwrite:
                raise JtsmError(f"{p}: not written by jtsm {self.command} (or changed since it "
                                "was); --overwrite replaces it (or choose another folder)")

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """Yield an empty staging folder (``.OUT.partial`` beside ``out``) to write every
        output into; when the block succeeds, :meth:`commit` moves them in. When it fails, the
        staging folder is removed and ``out`` is untouched."""
        from jtsm.rundir.lock import folder_lock

        stage = staging_path(os.path.abspath(self.out))  # beside it, also for "."
        with folder_lock(self.out):  # one writer: two would share the staging folder
            _remove(stage)  # left by a killed run
            make_folder(stage)
            try:
                yield stage
                self.commit(stage)
            finally:
                _remove(stage)

    def commit(self, stage: Path) -> None:
        """Move every file of ``stage`` into ``out``: the command's own previous files that
        the new output lacks are removed first, the others replaced, then the record lists
        the new files only."""
        new = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*")
                     if p.is_file() or p.is_symlink())
        self.check(new)
        stats = {name: _stat(stage / name) for name in new}
        union = {name: list(st) for name, st in self.own.items()}
        for name, st in stats.items():
            union.setdefault(name, []).append(st)
        make_folder(self.out)
        self._write_record(union)
        gone = [name for name in self.own if name not in stats]
        for name in gone:
            try:
                (self.out / name).unlink(missing_ok=True)
            except OSError as exc:
                raise write_error(self.out / name, exc) from None
        for name in new:
            target = self.out / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / name, target)
            except OSError as exc:
                raise write_error(target, exc) from None
        for name in gone:  # folders that held only its removed files
            parent = (self.out / name).parent
            while parent != self.out and self.out in parent.parents:
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent
        self.own = {name: [st] for name, st in stats.items() if st is not None}
        self._write_record(self.own)

    def _write_record(self, files: Mapping[str, list[list[int]]]) -> None:
        from jtsm import __version__

        atomic_write_json(self.record, {"command": f"jtsm {self.command}",
                                        "jtsm": str(__version__), "files": dict(files)})


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)

