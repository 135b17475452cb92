"""Make proposals for a folder (or a dataset json) of images: shard, skip done ones, pool.

The library side of ``jtsm proposals``: :func:`list_images` finds the images,
:func:`select_shard` keeps one shard of a job array, :func:`run_proposals` computes and stores
the missing proposal files in a process pool and yields one :class:`ImageResult` per image.
Files are written atomically, so a killed run is finished by running it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.data.images import IMAGE_EXTENSIONS, image_source
from jtsm.errors import ConfigError, DataError, JtsmError
from jtsm.fileio import read_image, read_json, safe_join
from jtsm.proposals.store import ProposalStore
from jtsm.rundir.fingerprint import source_record
from jtsm.rundir.layout import STORE_ENTRIES, STORE_INDEX, STORE_MARKERS
from jtsm.structures import ProposalSet
from jtsm.worker_pool import run_pool, worker_count

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageItem",
    "ImageResult",
    "RunSummary",
    "generate_one",
    "list_images",
    "parse_shard",
    "run_proposals",
    "select_shard",
]



@dataclass(frozen=True)
class ImageItem:
    """An image to process: ``name`` relative to the image root (POSIX), ``path`` on disk."""

    name: str
    path: Path


@dataclass(frozen=True)
class ImageResult:
    """Outcome for one image: ``status`` is ``"done"``, ``"skipped"`` (file existed) or
    ``"bad"`` (unreadable image or input, ``error`` says why)."""

    name: str
    status: str
    proposals: int = 0
    seconds: float = 0.0
    height: int = 0
    width: int = 0
    error: str = ""


@dataclass
class RunSummary:
    """Totals of a run (``as_dict`` is what ``jtsm proposals --json`` prints)."""

    results: list[ImageResult] = field(default_factory=list)

    def add(self, r: ImageResult) -> None:
        self.results.append(r)

    @property
    def done(self) -> list[ImageResult]:
        return [r for r in self.results if r.status == "done"]

    @property
    def bad(self) -> list[ImageResult]:
        return [r for r in self.results if r.status == "bad"]

    def as_dict(self) -> dict[str, Any]:
        done = self.done
        n = max(len(done), 1)
        return {
            "images": len(self.results),
            "computed": len(done),
            "skipped": sum(r.status == "skipped" for r in self.results),
            "bad": [{"image": r.name, "error": r.error} for r in self.bad],
            "proposals_per_image": sum(r.proposals for r in done) / n if done else 0.0,
            "seconds_per_image": sum(r.seconds for r in done) / n if done else 0.0,
        }


def list_images(
    images: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None = None,
    exclude: str | os.PathLike[str] | None = None,
) -> list[ImageItem]:
    """Images under ``images`` (recursively, sorted), or those a COCO json lists.

    ``images`` is a folder, one image file or a text file listing image paths
    (:func:`jtsm.data.images.image_source`); a json's file names are relative to its root.

    ``exclude`` (the output folder) is never searched, so pictures written there by
    ``--viz`` are not taken for images when the output lies inside the image folder.

    Raises:
        DataError: the folder or json is missing/malformed, or a ``file_name`` escapes the
            image folder.
    """
    source = image_source(images)  # a folder, one image, or a list of image paths
    root = source.root
    if dataset is not None:
        obj = read_json(dataset)
        recs = obj.get("images") if isinstance(obj, dict) else None
        if not isinstance(recs, list):
            raise DataError(f"{dataset}: no 'images' list")
        items = []
        for rec in recs:
            if not isinstance(rec, dict) or not isinstance(rec.get("file_name"), str):
                raise DataError(f"{dataset}: an image record has no 'file_name': {rec!r:.80}")
            name = rec["file_name"]
            try:
                path = safe_join(root, name)
            except DataError as exc:
                raise DataError(f"{dataset}: {exc}") from None
            items.append(ImageItem(name, path))
        return items
    if source.names is not None:
        return [ImageItem(name, root / name) for name in source.names]
    skip = Path(exclude).resolve() if exclude is not None else None
    found = [
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and (skip is None or skip not in p.resolve().parents)
    ]
    return [ImageItem(p.relative_to(root).as_posix(), p) for p in sorted(found)]


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N) -> ``(I, N)``; ``None`` -> ``(0, 1)``."""
    if spec is None:
        return 0, 1
    try:
        i_s, n_s = spec.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {spec!r}: need 0 <= I < N")
    return i, n


def select_shard(items: list[ImageItem], index: int, count: int) -> list[ImageItem]:
    """Every ``count``-th image starting at ``index`` (shards cover all images once)."""
    return items[index::count]


# ---- worker --------------------------------------------------------------------------------
_JOB: dict[str, Any] = {}


def _init_worker(job: dict[str, Any]) -> None:
    import cv2

    cv2.setNumThreads(1)
    _JOB.clear()
    _JOB.update(job)


def generate_one(
    image: np.ndarray,
    method: Any,
    max_proposals: int | None,
    image_path: Any = None,
    options: Mapping[str, Any] | None = None,
) -> ProposalSet:
    """Run generator ``method`` on one image; drop empty/duplicate masks, keep the best.

    ``max_proposals`` is also handed to the generator if it takes that keyword.

    Raises:
        DataError: bad input for this image (from the generator). PluginError: unknown
        method. JtsmError: the generator crashed or returned another image size (named).
    """
    from jtsm.plugins import from_worker, get_proposal_generator, takes_keyword

    gen = from_worker(method, get_proposal_generator)  # a name or the generator itself
    method = gen.name
    opts = dict(options or {})
    if takes_keyword(gen.generate, "max_proposals", through_kwargs=True):
        opts.setdefault("max_proposals", max_proposals)
    where = image_path if image_path is not None else "image"
    try:
        ps = gen.generate(image, image_path=image_path, **opts)
    except JtsmError:
        raise
    except Exception as exc:  # noqa: BLE001 - name the image a method crashed on
        given = ", ".join(f"{k}={v!r}" for k, v in (options or {}).items())
        with_opts = f" with --opt {given}" if given else ""
        raise JtsmError(
            f"{where}: method {method!r} failed{with_opts} ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(ps, ProposalSet):
        raise JtsmError(f"{where}: method {method!r} returned {type(ps).__name__}, "
                        "not a ProposalSet")
    if ps.image_size != tuple(image.shape[:2]):
        raise JtsmError(
            f"{where}: method {method!r} returned proposals of size {ps.image_size}, "
            f"image is {tuple(image.shape[:2])}"
        )
    return ps.clean(max_proposals)


def _process(item: ImageItem) -> ImageResult:
    job = _JOB
    t0 = time.perf_counter()
    try:
        source = source_record(item.path)  # before reading: a later change is seen next time
        image = read_image(item.path)
        ps = generate_one(image, job["method"], job["max_proposals"], item.path, job["options"])
    except DataError as exc:
        return ImageResult(item.name, "bad", error=str(exc))
    h, w = image.shape[:2]
    ProposalStore(job["out"]).save(item.name, ps, job["job"], source)
    return ImageResult(item.name, "done", len(ps), time.perf_counter() - t0, h, w)


def run_proposals(
    items: Iterable[ImageItem],
    out: str | os.PathLike[str],
    method: str = "selective-search",
    max_proposals: int | None = 2000,
    workers: int | None = None,
    options: Mapping[str, Any] | None = None,
    skip_existing: bool = True,
    overwrite: bool = False,
    verify: bool = False,
) -> Iterator[ImageResult]:
    """Compute and store proposals; yields one result per image (order not guaranteed).

    Arguments:
        items: images (:func:`list_images`, possibly :func:`select_shard`-ed).
        out: proposal store folder.
        method: a registered proposal generator (:func:`jtsm.plugins.proposal_generators`).
        max_proposals: keep at most this many per image (after dropping empty/duplicates);
            also handed to the generator as a hint.
        workers: processes (``None`` or 0: all cores this process may use; 1: in this
            process); a pool of :mod:`jtsm.worker_pool` (workers end with this process, SIGTERM
            ends them and raises :class:`jtsm.errors.Terminated`).
        options: extra keyword options for the generator (e.g. ``mcg_dir``, ``mode``).
        skip_existing: images whose proposal file exists, made by this job from the image
            file as it is now, are skipped (resume after a kill); an image whose file changed
            since (size and modification time, then its content digest) is done again.
        verify: compare every image's content digest, not only size and modification time.
        overwrite: replace a store made by another job (other method, ``--max`` or options)
            instead of refusing it.

    The store records its job in ``STORE/meta.json`` (and each file the job's digest): a rerun
    with the same settings continues it; other settings are refused before anything is written,
    so one store never mixes two methods.

    Raises:
        PluginError: unknown method. JtsmError: a method crashed (the image is named), or the
        store holds another job's proposals.
    """
    from jtsm.plugins import for_workers, get_proposal_generator

    generator = get_proposal_generator(method)  # fail early on an unknown name
    store = ProposalStore(out)
    fp = store_fingerprint(method, max_proposals, options)
    digest = _claim_store(store, fp, overwrite)
    todo: list[ImageItem] = []
    for item in items:
        if skip_existing and store.exists(item.name):
            stamp = store.file_job(item.name)
            if stamp and stamp != digest:
                raise JtsmError(f"{store.path_for(item.name)}: made by another proposal job "
                                "than STORE/meta.json records; --overwrite replaces the store")
            if store.is_current(item.name, item.path, verify):
                yield ImageResult(item.name, "skipped")
            else:
                todo.append(item)  # the image changed since: its proposals are remade
        else:
            todo.append(item)
    if not todo:
        return
    job = {
        "method": for_workers(generator, method),
        "max_proposals": max_proposals,
        "options": dict(options or {}),
        "out": str(out),
        "job": digest,
    }
    n = worker_count(workers, len(todo))
    if n <= 1:
        _init_worker(job)
        for item in todo:
            yield _process(item)
        return
    yield from run_pool(_process, todo, n, _init_worker, (job,), name=lambda it: it.name,
                        doing="making proposals for")


def store_fingerprint(method: str, max_proposals: int | None,
                      options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fingerprint of a proposal job (:mod:`jtsm.rundir.fingerprint`)."""
    from jtsm.rundir.fingerprint import fingerprint

    return fingerprint("proposals", {}, {"method": method, "max": max_proposals,
                                         "opt": dict(sorted((options or {}).items()))})




def _claim_store(store: ProposalStore, fp: dict[str, Any], overwrite: bool) -> str:
    """Check (or replace, with ``overwrite``) the job a store records, then record ``fp``;
    returns the job digest its files carry."""
    from jtsm.rundir.fingerprint import check_folder, clear_folder, fingerprint_digest

    action = check_folder(store.root, fp, resume=False, overwrite=overwrite,
                          what="proposal store", markers=STORE_MARKERS,
                          resume_implied=True)
    if action == "new" and store.root.is_dir() and next(store.root.rglob("*.npz"), None):
        if not overwrite:
            raise JtsmError(f"{store.root}: holds proposal files that record no job (made by an "
                            "older jtsm); --overwrite replaces them, or choose another --out")
        action = "overwrite"
    if action == "overwrite":
        clear_folder(store.root, STORE_ENTRIES, "proposal store")
    if action != "resume":
        store.write_meta({"fingerprint": fp})
    return fingerprint_digest(fp)


def update_index(
    out: str | os.PathLike[str], results: Iterable[ImageResult], shard: tuple[int, int] = (0, 1)
) -> Path:
    """Add the computed (and skipped, if missing) images to the store's index file.

    One index file per shard (``index.json`` or ``index.shardI-of-N.json``), so shards never
    write the same file.
    """
    store = ProposalStore(out)
    i, n = shard
    name = STORE_INDEX if n == 1 else f"{STORE_INDEX}.shard{i}-of-{n}"
    path = store.root / f"{name}.json"
    entries: dict[str, Any] = {}
    if path.is_file():
        obj = read_json(path)
        if isinstance(obj, dict) and isinstance(obj.get("images"), dict):
            entries.update(obj["images"])
    for r in results:
        if r.status == "done":
            rel = store.path_for(r.name).relative_to(store.root.resolve()).as_posix()
            entries[r.name] = {
                "file": rel, "proposals": r.proposals, "height": r.height, "width": r.width
            }
        elif r.status == "skipped" and r.name not in entries:
            # finished by a run that was killed before it could write the index
            try:
                entries[r.name] = store.read_entry(r.name)
            except DataError:
                pass  # a damaged file is reported when it is loaded
    return store.write_index(entries, name)
