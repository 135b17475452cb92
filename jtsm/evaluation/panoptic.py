"""Panoptic quality (PQ, SQ, RQ), with the rules of ``panopticapi.evaluation.pq_compute``.

Per image, a gt segment and a predicted segment of the same category match when their IoU exceeds
0.5; the union leaves out the predicted segment's void pixels. Crowd gt segments never match and
are not false negatives. An unmatched predicted segment is a false positive unless more than half
of it lies on void or on the (last listed) crowd segment of its category. Per class,
``PQ = sum IoU / (TP + FP/2 + FN/2)``, ``SQ = sum IoU / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``;
All / Things / Stuff average the classes with ``TP + FP + FN > 0``. As in panopticapi, a gt
segment's area is its json ``area`` when given (else its pixel count) and a prediction's area is
its pixel count.

The computation is vectorised per image (one joint histogram of gt x pred ids over the runs of
equal pixel pairs, see :mod:`jtsm.evaluation.idmaps`) and spread over a process pool. Entry points:

- :func:`evaluate_pq`: files (COCO panoptic json + PNG folder for gt and prediction);
- :func:`pq_from_pairs` / :class:`PanopticEvaluator`: in-memory :class:`PanopticSeg` pairs.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from jtsm.errors import DataError
from jtsm.evaluation.idmaps import (
    FIRST,
    ID_LIMIT,
    VOID,
    IdIndexer,
    png_pair_runs,
    read_rgb_png,
)
from jtsm.structures import CategoryMap, PanopticSeg
from jtsm.system import available_cores

__all__ = ["PQStats", "PanopticEvaluator", "evaluate_pq", "pq_from_pairs", "summarize_pq"]

#: Images per pool task.
CHUNK = 8

S = TypeVar("S")  # per-chunk statistics that add up with ``+=``


# --------------------------------------------------------------------------------------------
# Per-class accumulators and the summary
# --------------------------------------------------------------------------------------------
@dataclass
class PQStats:
    """Per-class sums over images: matched IoU, true / false positives, false negatives."""

    iou: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int) -> PQStats:
        z = np.zeros(num_classes, np.int64)
        return cls(np.zeros(num_classes, np.float64), z.copy(), z.copy(), z.copy())

    def __iadd__(self, other: PQStats) -> PQStats:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


def summarize_pq(stats: PQStats, categories: CategoryMap) -> dict[str, Any]:
    """The result dict: ``All`` / ``Things`` / ``Stuff`` -> ``{pq, sq, rq, n}``, ``per_class``.

    ``per_class`` maps a category name to ``{pq, sq, rq}`` for each class that occurs
    (``TP + FP + FN > 0``), i.e. the classes the averages are taken over. Values are fractions.
    """
    names = _unique_names(categories)
    per_class: dict[str, dict[str, float]] = {}
    groups: dict[str, list[dict[str, float]]] = {"All": [], "Things": [], "Stuff": []}
    for k in range(categories.num_classes):
        tp, fp, fn = int(stats.tp[k]), int(stats.fp[k]), int(stats.fn[k])
        if tp + fp + fn == 0:
            continue
        iou = float(stats.iou[k])
        denom = tp + 0.5 * fp + 0.5 * fn
        res = {"pq": iou / denom, "sq": iou / tp if tp else 0.0, "rq": tp / denom}
        per_class[names[k]] = res
        groups["All"].append(res)
        groups["Things" if k < categories.num_things else "Stuff"].append(res)
    out: dict[str, Any] = {}
    for name, rows in groups.items():
        n = len(rows)
        out[name] = {
            key: (sum(r[key] for r in rows) / n if n else 0.0) for key in ("pq", "sq", "rq")
        }
        out[name]["n"] = n
    out["per_class"] = per_class
    return out


def _unique_names(categories: CategoryMap) -> list[str]:
    names = categories.names
    dup = {n for n in names if names.count(n) > 1}
    return [f"{n} ({i})" if n in dup else n for n, i in zip(names, categories.ids)]


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------
@dataclass
class SegmentTable:
    """An image's ``segments_info`` as arrays: id, class index, crowd flag, json area (-1: none)."""

    ids: np.ndarray
    cls: np.ndarray
    iscrowd: np.ndarray
    area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def from_segments(
        cls, segments: Sequence[dict[str, Any]], categories: CategoryMap, where: str
    ) -> SegmentTable:
        """Validate and convert; ``where`` names the file / image in error messages."""
        fast = cls._from_plain_segments(segments, categories)
        if fast is not None:
            return fast
        n = len(segments)
        ids = np.empty(n, np.int64)
        klass = np.empty(n, np.intp)
        crowd = np.zeros(n, bool)
        area = np.full(n, -1, np.int64)
        for j, s in enumerate(segments):
            if not isinstance(s, dict) or "id" not in s or "category_id" not in s:
                raise DataError(f"{where}: segments_info[{j}] needs 'id' and 'category_id'")
            sid, cid = s["id"], s["category_id"]
            if not isinstance(sid, (int, np.integer)) or not 0 < sid < ID_LIMIT:
                raise DataError(f"{where}: segment id {sid!r} is not an integer in [1, 2^24)")
            if cid not in categories:
                raise DataError(f"{where}: segment {sid} has unknown category id {cid!r}")
            ids[j], klass[j] = sid, categories.index(cid)
            crowd[j] = bool(s.get("iscrowd", 0))
            if isinstance(s.get("area"), (int, float)):
                area[j] = int(s["area"])
        if len(np.unique(ids)) != n:
            dup = sorted({int(i) for i in ids if (ids == i).sum() > 1})
            raise DataError(f"{where}: duplicate segment id(s) {dup[:5]} in segments_info")
        return cls(ids, klass, crowd, area)

    @classmethod
    def _from_plain_segments(
        cls, segments: Sequence[dict[str, Any]], categories: CategoryMap
    ) -> SegmentTable | None:
        """The common case in a few list passes: dicts of plain ints, ids in range and unique,
        known categories. ``None`` for anything else (the checked loop then names the fault)."""
        try:
            ids = [s["id"] for s in segments]
            cids = [s["category_id"] for s in segments]
            crowd = [s.get("iscrowd", 0) for s in segments]
            area = [s.get("area", -1) for s in segments]
        except (TypeError, KeyError, AttributeError):
            return None
        if not {type(v) for v in ids + cids + crowd} <= {int}:
            return None
        if not {type(v) for v in area} <= {int, float}:
            return None
        ids_a = np.array(ids, np.int64)
        if len(ids) and (ids_a.min() <= 0 or ids_a.max() >= ID_LIMIT):
            return None
        if len(np.unique(ids_a)) != len(ids):
            return None
        try:
            klass = np.array([categories.index(c) for c in cids], np.intp)
        except KeyError:
            return None
        area_a = np.array([int(a) for a in area], np.int64)  # json area: int() as the loop does
        return cls(ids_a, klass, np.array(crowd, bool), area_a)


def image_pq_stats(
    gt_ids: np.ndarray,
    gt: SegmentTable,
    pred_ids: np.ndarray,
    pred: SegmentTable,
    num_classes: int,
    indexer: IdIndexer,
    gt_name: str = "ground truth",
    pred_name: str = "prediction",
) -> PQStats:
    """PQ counts of one image from its gt and predicted maps and segment tables.

    A map is an ``(H, W)`` id map or the ``(H, W, 3)`` uint8 R, G, B bytes of a panoptic PNG.
    """
    hist = checked_histogram(gt_ids, gt, pred_ids, pred, indexer, gt_name, pred_name)
    return _match(hist, gt, pred, num_classes, pred_name)


def checked_histogram(
    gt_ids: np.ndarray,
    gt: SegmentTable,
    pred_ids: np.ndarray,
    pred: SegmentTable,
    indexer: IdIndexer,
    gt_name: str = "ground truth",
    pred_name: str = "prediction",
) -> np.ndarray:
    """The ``(n_gt + 2, n_pred + 2)`` joint histogram of one image (see
    :meth:`IdIndexer.histogram`), after the checks every PQ path makes: equal sizes, no PNG id
    missing from ``segments_info``, no gt segment listed but absent from its PNG."""
    if gt_ids.shape[:2] != pred_ids.shape[:2]:
        raise DataError(
            f"{pred_name}: size {pred_ids.shape[1]}x{pred_ids.shape[0]} differs from the ground "
            f"truth's {gt_ids.shape[1]}x{gt_ids.shape[0]}"
        )
    hist = indexer.histogram(gt_ids, gt.ids, pred_ids, pred.ids)
    if hist[0].any():
        bad = indexer.unknown_ids(gt_ids, gt.ids)
        raise DataError(f"{gt_name}: PNG has segment id(s) {bad} absent from segments_info")
    if hist[:, 0].any():
        bad = indexer.unknown_ids(pred_ids, pred.ids)
        raise DataError(f"{pred_name}: PNG has segment id(s) {bad} absent from segments_info")
    empty = hist[FIRST:, :].sum(axis=1) == 0  # would count as a miss against the prediction
    if empty.any():
        raise DataError(f"{gt_name}: segment id(s) {gt.ids[empty][:5].tolist()} listed in "
                        "segments_info but absent from the PNG")
    return hist


def _match(
    hist: np.ndarray,
    gt: SegmentTable,
    pred: SegmentTable,
    num_classes: int,
    pred_name: str,
    cap: np.ndarray | None = None,
) -> PQStats:
    """PQ counts from an image's ``(n_gt + 2, n_pred + 2)`` joint histogram.

    ``cap``, an ``(n_gt, n_pred)`` array, bounds each pair's mask IoU from above: pairs match
    and are scored with ``min(mask IoU, cap)`` (Boundary PQ passes the boundary IoUs). Every
    other rule (classes, crowd, void, the ignored false positives) is unchanged."""
    inter = hist[FIRST:, FIRST:]  # (n_gt, n_pred) intersections
    pred_void = hist[VOID, FIRST:]  # predicted pixels on gt void
    pred_area = hist[:, FIRST:].sum(axis=0)
    missing = pred_area == 0
    if missing.any():
        raise DataError(
            f"{pred_name}: segment id(s) {pred.ids[missing][:5].tolist()} listed in "
            "segments_info but absent from the PNG"
        )
    gt_area = np.where(gt.area >= 0, gt.area, hist[FIRST:, :].sum(axis=1))

    # Matches: same class, gt not crowd, IoU > 0.5 (IoU ignores the prediction's void pixels).
    candidate = (gt.cls[:, None] == pred.cls[None, :]) & ~gt.iscrowd[:, None] & (inter > 0)
    union = pred_area[None, :] + gt_area[:, None] - inter - pred_void[None, :]
    iou = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=iou, where=candidate)
    if cap is not None:
        np.minimum(iou, cap, out=iou)
    matched = candidate & (iou > 0.5)
    g, p = np.nonzero(matched)

    stats = PQStats.zeros(num_classes)
    stats.tp += np.bincount(gt.cls[g], minlength=num_classes)
    stats.iou += np.bincount(gt.cls[g], weights=iou[g, p], minlength=num_classes)
    fn = ~matched.any(axis=1) & ~gt.iscrowd
    stats.fn += np.bincount(gt.cls[fn], minlength=num_classes)

    # Unmatched predictions are false positives unless mostly on void + same-class crowd.
    crowd_of = np.full(num_classes, -1, np.intp)
    for k in np.flatnonzero(gt.iscrowd):  # in listed order: the last crowd segment wins
        crowd_of[gt.cls[k]] = k
    rows = crowd_of[pred.cls]
    on_crowd = np.where(rows >= 0, inter[np.maximum(rows, 0), np.arange(len(pred.ids))], 0)
    ignored = (pred_void + on_crowd) / pred_area > 0.5
    fp = ~matched.any(axis=0) & ~ignored
    stats.fp += np.bincount(pred.cls[fp], minlength=num_classes)
    return stats


# --------------------------------------------------------------------------------------------
# In memory: the evaluator protocol
# --------------------------------------------------------------------------------------------
class PanopticEvaluator:
    """Accumulates PQ over in-memory :class:`PanopticSeg` pairs (reset / process / evaluate).

    Arguments:
        categories: the dataset's categories (a :class:`CategoryMap` or COCO category dicts).
    """

    def __init__(self, categories: CategoryMap | Sequence[dict[str, Any]]) -> None:
        if not isinstance(categories, CategoryMap):
            categories = CategoryMap.from_coco(categories)
        self.categories = categories
        self._indexer = IdIndexer()
        self.reset()

    def reset(self) -> None:
        self.stats = self._zeros()
        self._count = 0

    def _zeros(self) -> Any:
        return PQStats.zeros(self.categories.num_classes)

    def _image_stats(self, gt: PanopticSeg, gt_t: SegmentTable, pred: PanopticSeg,
                     pred_t: SegmentTable, gt_name: str, pred_name: str) -> Any:
        return image_pq_stats(gt.ids, gt_t, pred.ids, pred_t, self.categories.num_classes,
                              self._indexer, gt_name, pred_name)

    def process(self, gt: PanopticSeg, pred: PanopticSeg, name: str | None = None) -> None:
        """Add one image; ``name`` (default ``image <n>``) is used in error messages."""
        name = name or f"image {self._count}"
        cats = self.categories
        gt_name, pred_name = f"{name} (ground truth)", f"{name} (prediction)"
        gt_t = SegmentTable.from_segments(gt.segments, cats, gt_name)
        pred_t = SegmentTable.from_segments(pred.segments, cats, pred_name)
        self.stats += self._image_stats(gt, gt_t, pred, pred_t, gt_name, pred_name)
        self._count += 1

    def evaluate(self) -> dict[str, Any]:
        """The result of :func:`summarize_pq` over the images processed so far."""
        return summarize_pq(self.stats, self.categories)


def pq_from_pairs(
    pairs: Iterable[tuple[PanopticSeg, PanopticSeg]],
    categories: CategoryMap | Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """PQ of ``(gt, pred)`` :class:`PanopticSeg` pairs, no files (see :func:`summarize_pq`)."""
    ev = PanopticEvaluator(categories)
    for gt, pred in pairs:
        ev.process(gt, pred)
    return ev.evaluate()


# --------------------------------------------------------------------------------------------
# Files: COCO panoptic json + PNG folders, over a process pool
# --------------------------------------------------------------------------------------------
@dataclass
class _Job:
    gt_png: str
    pred_png: str
    gt: SegmentTable
    pred: SegmentTable
    size: tuple[int, int] | None  # (height, width) from the gt image record


def _run_jobs(jobs: Sequence[_Job], num_classes: int) -> PQStats:
    indexer = _worker_indexer()
    stats = PQStats.zeros(num_classes)
    for job in jobs:
        stats += _job_stats(job, num_classes, indexer)
    return stats


def _job_stats(job: _Job, num_classes: int, indexer: IdIndexer) -> PQStats:
    """One image's PQ counts. The C extension gives the runs straight from the two PNGs; when
    it is absent or declines (a PNG it does not decode, a fault, sizes that differ), and when
    the image has a fault to report (a size against its record, an unlisted id), the images are
    decoded whole and checked as they always were, so every error reads the same either way."""
    runs = png_pair_runs(job.gt_png, job.pred_png, indexer.scratch)
    if runs is not None:
        size, g, p, lengths = runs
        if job.size is None or size == job.size:
            hist = indexer.run_histogram(g, job.gt.ids, p, job.pred.ids, lengths)
            if not hist[0].any() and not hist[:, 0].any() and hist[FIRST:].sum(1).all():
                return _match(hist, job.gt, job.pred, num_classes, job.pred_png)
    gt_ids, pred_ids = _decode_job(job, indexer)
    return image_pq_stats(
        gt_ids, job.gt, pred_ids, job.pred, num_classes, indexer, job.gt_png, job.pred_png
    )


def _decode_job(job: _Job, indexer: IdIndexer) -> tuple[np.ndarray, np.ndarray]:
    """Both PNGs of a job as ``(H, W, 3)`` uint8 R, G, B, the gt checked against its record."""
    gt_ids = read_rgb_png(job.gt_png, indexer.scratch)
    if job.size is not None and gt_ids.shape[:2] != job.size:
        raise DataError(
            f"{job.gt_png}: PNG is {gt_ids.shape[1]}x{gt_ids.shape[0]}, image record says "
            f"{job.size[1]}x{job.size[0]}"
        )
    return gt_ids, read_rgb_png(job.pred_png, indexer.scratch)


_LOCAL = threading.local()  # one indexer (lookup table + work buffers) per thread


def _worker_indexer() -> IdIndexer:
    ix = getattr(_LOCAL, "indexer", None)
    if ix is None:
        ix = _LOCAL.indexer = IdIndexer()
    return ix


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one core per worker: parallelism comes from the pool
    _worker_indexer()


def _load_predictions(pred_json: Path) -> dict[int, dict[str, Any]]:
    from jtsm.fileio import read_json

    d = read_json(pred_json)
    anns = d.get("annotations") if isinstance(d, dict) else None
    if not isinstance(anns, list):
        raise DataError(f"{pred_json}: expected a JSON object with an 'annotations' list")
    out: dict[int, dict[str, Any]] = {}
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or not {"image_id", "file_name", "segments_info"} <= set(a):
            raise DataError(
                f"{pred_json}: annotations[{i}] needs image_id, file_name and segments_info"
            )
        if not isinstance(a["segments_info"], list):
            raise DataError(f"{pred_json}: annotations[{i}].segments_info is not a list")
        if a["image_id"] in out:
            raise DataError(f"{pred_json}: image id {a['image_id']} has two predictions")
        out[a["image_id"]] = a
    return out


class _Folder:
    """:func:`jtsm.fileio.safe_join` for many names in one folder: the folder is resolved once
    and a plain file name (no separator, not ``.``/``..``, not a link) is joined without
    resolving it again; anything else goes through ``safe_join``. Same paths, same errors."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.resolved = root.resolve()

    def join(self, name: Any) -> str:
        if (
            isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in "/\\\x00:")
        ):
            full = os.path.join(self.resolved, name)
            if not os.path.islink(full):
                return full
        from jtsm.fileio import safe_join

        return str(safe_join(self.root, name))


def _build_jobs(
    gt_json: str | os.PathLike[str], pred_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None, pred_dir: str | os.PathLike[str] | None,
    ids: Iterable[int] | None = None,
) -> tuple[list[_Job], CategoryMap]:
    """One job per ground-truth image (``ids``: only these), as every panoptic metric reads
    the two files."""
    from jtsm.data.coco_panoptic import png_dir_for
    from jtsm.evaluation.cocogt import load_panoptic_gt

    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_dir = Path(gt_dir) if gt_dir is not None else None
    pred_dir = Path(pred_dir) if pred_dir is not None else None
    image_ids = None if ids is None else {int(i) for i in ids}

    ds = load_panoptic_gt(gt_json, gt_dir)
    preds = _load_predictions(pred_json)
    pdir = pred_dir if pred_dir is not None else png_dir_for(pred_json)
    if not pdir.is_dir():
        raise DataError(f"{pdir}: prediction PNG folder not found (give it with --pred-dir)")
    if not ds.png_dir.is_dir():
        raise DataError(f"{ds.png_dir}: ground-truth PNG folder not found (give it with --gt-dir)")
    records = {im["id"]: im for im in ds.images}
    cats = ds.categories
    gt_root, pred_root = _Folder(ds.png_dir), _Folder(pdir)
    jobs = []
    for image_id, ann in ds.annotations.items():
        if image_ids is not None and image_id not in image_ids:
            continue
        im = records.get(image_id, {})
        desc = f"image {image_id} ({im.get('file_name', ann['file_name'])})"
        pred = preds.get(image_id)
        if pred is None:
            raise DataError(f"{pred_json}: no prediction for {desc}")
        size = (int(im["height"]), int(im["width"])) if "height" in im and "width" in im else None
        jobs.append(
            _Job(
                gt_root.join(ann["file_name"]),
                pred_root.join(pred["file_name"]),
                SegmentTable.from_segments(ann["segments_info"], cats, f"{gt_json}: {desc}"),
                SegmentTable.from_segments(pred["segments_info"], cats, f"{pred_json}: {desc}"),
                size,
            )
        )
    unknown = sorted(set(preds) - set(ds.annotations))
    if unknown:  # as the ap/map evaluators: a prediction for an image the truth lacks
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise DataError(f"{pred_json}: a prediction for image id {unknown[0]}{more}, which "
                        f"{gt_json} has no annotation for (another split?)")
    return jobs, cats


def evaluate_pq(
    gt_json: str | os.PathLike[str],
    pred_json: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str] | None = None,
    pred_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    image_ids: Iterable[int] | None = None,
) -> dict[str, Any]:
    """PQ of a COCO panoptic prediction against a COCO panoptic ground truth.

    Arguments:
        gt_json: ground-truth json (its PNG folder: ``gt_dir`` or the json's stem beside it).
        pred_json: prediction json, needing only ``annotations`` (PNG folder: ``pred_dir`` or
            the json's stem beside it). Every gt image must have a prediction, and every
            prediction a gt image.
        image_ids: score only these ground-truth images (e.g. the sample a prediction covers).
        workers: processes (default: all cores; 1 runs in this process).
        progress: called with (images finished, total images) as chunks finish.

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": {name: {"pq", "sq",
        "rq"}}}`` (see :func:`summarize_pq`). Errors raise :class:`DataError` naming the file.
    """
    jobs, cats = _build_jobs(gt_json, pred_json, gt_dir, pred_dir, image_ids)
    run = functools.partial(_run_jobs, num_classes=cats.num_classes)
    stats = sum_chunks(jobs, run, PQStats.zeros(cats.num_classes), workers, progress)
    return summarize_pq(stats, cats)


def sum_chunks(
    jobs: Sequence[_Job],
    run: Callable[[Sequence[_Job]], S],
    total: S,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> S:
    """``total += run(chunk)`` for each chunk of :data:`CHUNK` jobs, over a process pool.

    ``run`` is picklable (a module-level function or a ``functools.partial`` of one); ``workers``
    defaults to all cores (1 runs in this process). Fixed-size chunks summed in image order:
    the result is the same for any worker count. The first bad image stops the run.
    """
    workers = max(1, workers or available_cores())
    chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    pool = None
    if workers > 1 and len(chunks) > 1:
        # fresh interpreters, not forks: a fork copies locks other threads hold (OpenCV's
        # thread pool, after this process drew or decoded images) and a worker waits forever
        pool = ProcessPoolExecutor(min(workers, len(chunks)), initializer=_init_worker,
                                   mp_context=multiprocessing.get_context("spawn"))
    try:
        results: Iterable[S] = _run_here(chunks, run) if pool is None else pool.map(run, chunks)
        done = 0
        for chunk, res in zip(chunks, results):  # in order: sums do not depend on timing
            total += res
            done += len(chunk)
            if progress:
                progress(done, len(jobs))
    except BaseException:  # the first bad image stops the run: drop queued chunks
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown()
    return total


def _run_here(chunks: Sequence[Sequence[_Job]], run: Callable[[Sequence[_Job]], S]) -> Iterator[S]:
    """The chunks' stats computed in this process, OpenCV on one thread meanwhile."""
    previous = cv2.getNumThreads()
    _init_worker()
    try:
        for chunk in chunks:
            yield run(chunk)
    finally:
        cv2.setNumThreads(previous)


