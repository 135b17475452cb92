"""Fingerprints: what made a run folder or a store, checked before anything is written into it.

A fingerprint is a small json object recorded in ``RUN/meta.json`` (``STORE/meta.json`` for a
proposal store, ``OUT/meta.json`` for relabelled labels)::

    {"stage": "mine",
     "inputs": {"dataset": {"path": "/abs/train.json", "digest": "3f2a..."},
                "images": {"path": "/abs/images", "digest": "<digest of the image list>"},
                "proposals": {"path": "/abs/props", "digest": "<the store's fingerprint>"}},
     "options": {...},                       # method, evidence and their options
     "config": "<digest of the resolved config>",
     "jtsm": "0.2.0"}

Two fingerprints are the same job when stage, input digests, options and config digest agree
(paths may differ: a moved input with the same content is the same input; the jtsm version is
informative). :func:`check_folder` decides what a command may do with an existing folder:
start it, continue it (``--resume`` and the same job), or replace it (``--overwrite``); any
other case stops with one line naming what differs and both ways out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jtsm.config import canonical_key, flatten
from jtsm.errors import DataError, JtsmError
from jtsm.rundir.layout import (
    CHECKPOINTS,
    CONFIG,
    FINAL_WEIGHTS,
    META,
    RUN_ENTRIES,
    RunDir,
    read_meta,
)

__all__ = ["RESUMABLE_KEYS", "RunStart", "check_folder", "check_not_inside",
           "check_resume_weights", "clear_folder", "config_digest", "differences", "file_digest",
           "fingerprint", "fingerprint_digest", "images_digest", "input_record", "jtsm_version",
           "names_digest", "new_run_id", "prepare_run", "record_weights", "run_id_of",
           "same_source", "source_record", "check_weights"]

#: Config keys a resumed run may change: the schedule's length and bookkeeping, not the model
#: or the data (a larger ``solver.max_iter`` continues a finished stage).
RESUMABLE_KEYS = frozenset({"solver.max_iter", "solver.checkpoint_period",
                            "solver.checkpoint_minutes", "solver.log_period",
                            "solver.load_threads", "input.cache_mb"})

_CHUNK = 1 << 20


def jtsm_version() -> str:
    """The installed jtsm version."""
    from jtsm import __version__

    return str(__version__)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 (first 16 hex digits) of a file's bytes; a missing file names it."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a file") from None
    return h.hexdigest()[:16]


def source_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a derived file (a proposal part) records of the file it was made from: its size,
    modification time and content digest (:func:`file_digest`)."""
    st = os.stat(path)
    return {"bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns),
            "sha256": file_digest(path)}


def same_source(recorded: Mapping[str, Any] | None, path: str | os.PathLike[str],
                verify: bool = False) -> bool:
    """Whether ``path`` still holds the content ``recorded`` (:func:`source_record`) was taken
    of: the same size and modification time, or, when those differ (a copy, a ``touch``) or
    ``verify``, the same content digest. Nothing recorded (a file made before sources were
    recorded) counts as the same."""
    if not recorded:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != recorded.get("bytes"):
        return False
    if not verify and st.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    return file_digest(path) == recorded.get("sha256")


def images_digest(root: str | os.PathLike[str], names: Iterable[str]) -> str:
    """Digest of the images a stage reads: each name (order kept) with its file's size and
    modification time, so that another folder of the same names, or an image replaced in
    place, is another input (the bytes are not read: a stat per image)."""
    root = Path(root)
    items = []
    for name in names:
        try:
            st = (root / name).stat()
            items.append([name, st.st_size, st.st_mtime_ns])
        except OSError:
            items.append([name, None, None])
    return hashlib.sha256(_canonical(items)).hexdigest()[:16]


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def names_digest(names: Iterable[str]) -> str:
    """Digest of a list of image names (order kept: it is the order the stage reads them)."""
    return hashlib.sha256(_canonical(list(names))).hexdigest()[:16]


def _job_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's values that define the job, under their current names
    (:func:`jtsm.config.canonical_key`), without :data:`RESUMABLE_KEYS` and device placement,
    which do not change what is learnt."""
    flat = {canonical_key(k): v for k, v in flatten(config).items()}
    return {k: v for k, v in flat.items()
            if k not in RESUMABLE_KEYS and not k.startswith("device.") and k != "device"}


def config_digest(config: Mapping[str, Any]) -> str:
    """Digest of a resolved config (a :func:`jtsm.config.config_to_dict`), over the keys that
    define the job."""
    return hashlib.sha256(_canonical(_job_config(config))).hexdigest()[:16]


def input_record(path: str | os.PathLike[str] | None, digest: str | None = None
                 ) -> dict[str, Any]:
    """``{"path": <absolute, resolved>, "digest": ...}`` of one input (``path`` may be None)."""
    return {"path": None if path is None else str(Path(path).resolve()), "digest": digest}


def fingerprint(stage: str, inputs: Mapping[str, Mapping[str, Any]],
                options: Mapping[str, Any] | None = None,
                config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint of a job (see the module docstring)."""
    return {"stage": stage, "inputs": {k: dict(v) for k, v in inputs.items()},
            "options": dict(options or {}),
            "config": None if config is None else config_digest(config),
            "jtsm": jtsm_version()}


def _job(fp: Mapping[str, Any]) -> dict[str, Any]:
    inputs = fp.get("inputs") or {}
    return {"stage": fp.get("stage"),
            "inputs": {k: (v or {}).get("digest") for k, v in sorted(inputs.items())},
            "options": fp.get("options") or {}, "config": fp.get("config")}


def fingerprint_digest(fp: Mapping[str, Any]) -> str:
    """A short digest of the job a fingerprint describes (what per-image parts carry)."""
    return hashlib.sha256(_canonical(_job(fp))).hexdigest()[:16]


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any],
                recorded_config: Mapping[str, Any] | None = None,
                current_config: Mapping[str, Any] | None = None) -> list[str]:
    """What differs between two fingerprints, one short phrase per difference (config keys
    are named when both configs are given).

    With both configs given, a key the recorded config lacks counts as the same when the
    current value is that key's default: a run made before a key existed behaved as its
    default, so a newer jtsm still sees the same job (``--resume`` continues it)."""
    a, b = _job(recorded), _job(current)
    out = []
    if a["stage"] != b["stage"]:
        out.append(f"stage {a['stage']} vs {b['stage']}")
    for k in sorted(set(a["inputs"]) | set(b["inputs"])):
        if a["inputs"].get(k) != b["inputs"].get(k):
            was = ((recorded.get("inputs") or {}).get(k) or {}).get("path")
            now = ((current.get("inputs") or {}).get(k) or {}).get("path")
            where = f" ({was} vs {now})" if was != now else " (same path, other content)"
            out.append(f"input {k}{where}")
    for k in sorted(set(a["options"]) | set(b["options"])):
        if a["options"].get(k) != b["options"].get(k):
            out.append(f"{k} {a['options'].get(k)!r} vs {b['options'].get(k)!r}")
    if a["config"] != b["config"]:
        if recorded_config is not None and current_config is not None:
            fa, fb = _job_config(recorded_config), _job_config(current_config)
            new = _default_config()
            keys = [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)
                    and not (k not in fa and k in new and fb.get(k) == new[k])]
            out.extend(f"{k}={fa.get(k)!r} vs {fb.get(k)!r}" for k in keys[:3])
            if len(keys) > 3:
                out.append(f"{len(keys) - 3} more config values")
        else:
            out.append("config")
    return out


def _default_config() -> dict[str, Any]:
    """The default config, flattened to dotted keys."""
    from jtsm.config import Config, config_to_dict

    return flatten(config_to_dict(Config()))


def record_weights(run: str | os.PathLike[str]) -> None:
    """Record the digest of the run's weights file in its ``meta.json`` (``weights_sha256``),
    so that weights copied in from another run are told apart (:func:`check_weights`)."""
    from jtsm.fileio import atomic_write_json, read_json

    rd = RunDir(run)
    meta = read_json(rd.meta)
    meta["weights_sha256"] = file_digest(rd.weights)
    atomic_write_json(rd.meta, meta, indent=2)


def check_weights(run: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Refuse a weights file that is not the one the run wrote (runs that predate the record
    are not checked).

    Raises:
        DataError: naming the file, when its digest is not the one ``meta.json`` records.
    """
    want = meta.get("weights_sha256")
    rd = RunDir(run)
    if isinstance(want, str) and file_digest(rd.weights) != want:
        raise DataError(f"{rd.weights}: not the weights this run wrote (its meta.json records "
                        f"another digest: copied from another run, or changed since?); "
                        "retrain, or use the run the file came from")


def new_run_id() -> str:
    """A fresh run id (recorded in ``meta.json``; downstream runs name it as their input)."""
    return uuid.uuid4().hex[:16]


def run_id_of(run: str | os.PathLike[str]) -> str:
    """The id recorded in a run folder's ``meta.json`` (for runs that predate ids: a digest of
    its ``meta.json`` and ``model_final.pt`` sizes and times)."""
    from jtsm.fileio import read_json

    rd = RunDir(run)
    meta = read_json(rd.meta)
    if isinstance(meta, dict) and isinstance(meta.get("run_id"), str):
        return meta["run_id"]
    return file_digest(rd.meta)


def check_folder(out: str | os.PathLike[str], current: Mapping[str, Any], *,
                 resume: bool, overwrite: bool, what: str = "run",
                 markers: Iterable[str] = (META, CHECKPOINTS, FINAL_WEIGHTS),
                 resume_implied: bool = False,
                 current_config: Mapping[str, Any] | None = None) -> str:
    """What a command may do with ``out``, decided before anything is written there.

    Returns ``"new"`` (empty or absent: start), ``"resume"`` (the same job, and ``--resume``
    given or ``resume_implied``) or ``"overwrite"`` (``--overwrite``: the caller clears it).

    Raises:
        JtsmError: ``out`` holds another job, or the same job without ``--resume``; the one-line
            message names what differs and the two ways out.
    """
    out = Path(out)
    if resume and overwrite:
        raise JtsmError("--resume and --overwrite contradict each other: --resume continues the "
                        "job in the folder, --overwrite replaces it")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    present = [m for m in markers if (out / m).exists()]
    if not present:
        return "new"
    if overwrite:
        return "overwrite"
    meta = read_meta(out)
    recorded = (meta or {}).get("fingerprint")
    if not isinstance(recorded, dict):
        raise JtsmError(f"{out}: holds a {what} that records no fingerprint (made by an older "
                        "jtsm); --overwrite replaces it, or choose another --out")
    recorded_config = None
    if current_config is not None and (out / CONFIG).is_file():
        from jtsm.fileio import read_json

        recorded_config = read_json(out / CONFIG)
    diff = differences(recorded, current, recorded_config, current_config)
    if diff:
        raise JtsmError(f"{out}: holds another {what} ({'; '.join(diff)}); --resume is only for "
                        "the same job, --overwrite replaces it (or choose another --out)")
    if resume or resume_implied:
        return "resume"
    raise JtsmError(f"{out}: holds a {what} of this job already; --resume continues it, "
                    "--overwrite replaces it (or choose another --out)")


def clear_folder(out: str | os.PathLike[str], names: Iterable[str], what: str = "run") -> None:
    """Remove the named files/folders of ``out`` (an ``--overwrite``), and say so on stderr."""
    out = Path(out)
    removed = []
    for name in names:
        for p in sorted(out.glob(name)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        print(f"--overwrite: replacing the {what} in {out} ({len(removed)} entries removed)",
              file=sys.stderr)


def check_not_inside(out: str | os.PathLike[str], option: str,
                     inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Refuse an output folder equal to or inside an input run/store (``{option: path}``)."""
    o = Path(out).resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if o == p or p in o.parents:
            rel = "is" if o == p else "is inside"
            raise JtsmError(f"--out {out} {rel} the input {name} {path}: writing there would "
                            "replace what this command reads; choose another --out")


def check_resume_weights(out: str | os.PathLike[str], stages: Iterable[str],
                         model_state: Callable[[], Mapping[str, Any]]) -> None:
    """Before a resumed run writes anything: every stage checkpoint it would load has tensors
    of the shapes the current config's model has (names the file and the first key).

    ``model_state`` builds the model's ``state_dict`` (only called when a checkpoint exists,
    under a forked random state, so the run's own model is initialised as without the check).
    Checkpoint keys are matched after dropping a training adapter's leading ``model.`` (a
    checkpoint holds the adapter's state: the model and, in a warm-up, its classifier).
    """
    from jtsm.rundir.checkpoint import latest_checkpoint, load_checkpoint

    out = Path(out)
    state: Mapping[str, Any] | None = None
    for stage in stages:
        files = [p for p in (latest_checkpoint(out, stage),) if p is not None and p.is_file()]
        for path in files:
            ck = load_checkpoint(path)
            weights = ck.get("model", ck) if isinstance(ck.get("model"), dict) else ck
            if state is None:
                import torch

                with torch.random.fork_rng(devices=[]):  # the run's own init draws the same
                    state = model_state()
            for key, tensor in weights.items():
                k = key[len("model."):] if key.startswith("model.") else key
                want = state.get(k)
                shape = tuple(getattr(tensor, "shape", ()))
                if want is not None and tuple(want.shape) != shape:
                    raise DataError(
                        f"{path}: checkpoint does not fit this config ({k} is {list(shape)}, "
                        f"the config's model has {list(want.shape)}); resume with the run's own "
                        "config, or --overwrite to start again")


class RunStart:
    """A training run's folder, checked: what :func:`prepare_run` decided, and
    :meth:`begin`, which writes ``config.json`` and ``meta.json`` (rank 0, once the checks
    passed on every rank)."""

    def __init__(self, out: Path, action: str, fp: dict[str, Any],
                 config: Mapping[str, Any]) -> None:
        self.out, self.action, self.fingerprint, self.config = out, action, fp, dict(config)

    def begin(self, meta: Mapping[str, Any]) -> None:
        """Clear the folder (``--overwrite``), then write the config and ``meta.json`` (stage,
        categories, absolute input paths, ``run_id``, ``fingerprint``)."""
        from jtsm.fileio import atomic_write_json, make_folder

        if self.action == "overwrite":
            clear_folder(self.out, RUN_ENTRIES)
        run_id = run_id_of(self.out) if self.action == "resume" else new_run_id()
        make_folder(self.out)  # a read-only parent is named, not a raw OSError
        rd = RunDir(self.out)
        atomic_write_json(rd.config, self.config, indent=2)
        atomic_write_json(rd.meta, {**meta, "run_id": run_id, "fingerprint": self.fingerprint},
                          indent=2)


def prepare_run(out: str | os.PathLike[str], stage: str, config: Mapping[str, Any],
                inputs: Mapping[str, Mapping[str, Any]], *, resume: bool, overwrite: bool,
                check_inputs: Callable[[], None] | None = None, stages: Iterable[str] = (),
                model_state: Callable[[], Mapping[str, Any]] | None = None,
                inside: Mapping[str, str | os.PathLike[str] | None] | None = None) -> RunStart:
    """Every check of a training run, before a byte of it is written.

    In order: ``out`` is not an input run or store (``inside``: ``{option: path}``); the folder
    is new, the same job with ``--resume``, or ``--overwrite`` (:func:`check_folder`);
    ``check_inputs`` (e.g. every image's proposal file is whole and made for that image); on a
    resume, the checkpoints of ``stages`` fit the model of ``config`` (``model_state`` builds
    its ``state_dict``).
    """
    out = Path(out)
    check_not_inside(out, "--out", dict(inside or {}))
    fp = fingerprint(stage, inputs, config=config)
    action = check_folder(out, fp, resume=resume, overwrite=overwrite,
                          current_config=config)
    if check_inputs is not None:
        check_inputs()
    if action == "resume" and model_state is not None:
        check_resume_weights(out, stages, model_state)
    return RunStart(out, action, fp, config)
