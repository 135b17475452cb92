"""The work after training, shared by every rank: mined outputs and presence thresholds.

Once a stage has trained, every image of its dataset (mine: the tagged images; refine: those
its pseudo labels list) is scored once more at the test scales and segmented with its tags:
the segments and detections go to ``RUN/mined/`` (``jtsm mine``'s mined segments; ``jtsm
refine``'s refined ones, which the next self-training round relabels) and the image scores
calibrate ``RUN/presence.json``. On N ranks each rank scores every N-th image (rank ``r``
takes images ``r, r + N, ...``) and writes its part beside the outputs (PNGs in place, the
rest in ``.part-<rank>/``); after a barrier, rank 0 merges the parts in image order into the
files one process writes, byte for byte, and removes them. No rank waits at a barrier for more
than the slowest rank's share, so the group's timeout bounds a share, not the whole dataset.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.config import Config
from jtsm.data.coco_panoptic import PanopticWriter
from jtsm.data.mining_dataset import MiningDataset
from jtsm.engine.distributed import barrier, get_rank, get_world_size, is_main
from jtsm.engine.loader import Prefetcher, loader_threads
from jtsm.fileio import atomic_write_json, read_json
from jtsm.modeling.model import MiningModel
from jtsm.rundir.layout import DETECTIONS, PANOPTIC_JSON, PANOPTIC_PNGS, RunDir
from jtsm.structures import CategoryMap, ProposalSet

__all__ = ["shard", "write_mined"]


def shard(n: int) -> range:
    """The image indices (of ``n``) this rank scores: every world-size-th from its rank."""
    return range(get_rank(), n, get_world_size())


def _read(ds: MiningDataset, cfg: Config, model: MiningModel, indices: range
          ) -> Prefetcher[int, tuple[np.ndarray, ProposalSet]]:
    """``ds.read(i)`` for ``indices`` in order, ahead on ``solver.load_threads`` threads (a
    context manager)."""
    return Prefetcher(ds.read, indices, loader_threads(cfg.solver.load_threads,
                                                       model.pixel_mean.device))


def _part(folder: Path, rank: int) -> Path:
    return folder / f".part-{rank}"


def _save_scores(part: Path, indices: range, scores: list[np.ndarray], tags: list[np.ndarray],
                 num_classes: int) -> None:
    """This rank's image scores ``(k, C)`` and tag vectors ``(k, C)``, with their indices."""
    part.mkdir(parents=True, exist_ok=True)
    empty = np.zeros((0, num_classes), np.float32)
    np.savez(part / "scores.npz", index=np.asarray(list(indices), np.int64),
             scores=np.stack(scores) if scores else empty,
             tags=np.stack(tags) if tags else empty)


def _merged_scores(folder: Path, world: int) -> tuple[np.ndarray, np.ndarray]:
    """Every part's scores and tags, in image order: ``(n, C)`` each."""
    index, scores, tags = [], [], []
    for rank in range(world):
        with np.load(_part(folder, rank) / "scores.npz") as z:
            index.append(z["index"])
            scores.append(z["scores"])
            tags.append(z["tags"])
    order = np.argsort(np.concatenate(index), kind="stable")
    return np.concatenate(scores)[order], np.concatenate(tags)[order]


def _save_presence(run_dir: Path, scores: np.ndarray, tags: np.ndarray,
                   categories: CategoryMap, cfg: Config) -> None:
    """``RUN/presence.json``: per-class presence thresholds calibrated on training tags."""
    from jtsm.engine.selection import calibrate_presence

    thresholds = calibrate_presence(scores, tags, cfg.segments.presence_threshold)
    atomic_write_json(RunDir(run_dir).presence,
                      {"thresholds": thresholds.tolist(), "classes": categories.names})


def _remove_parts(folder: Path, world: int) -> None:
    for rank in range(world):
        shutil.rmtree(_part(folder, rank), ignore_errors=True)


def write_mined(model: MiningModel, ds: MiningDataset, out: Path, cfg: Config,
                progress: Callable[..., Any] | None = None) -> dict[str, Any] | None:
    """Mined segments (tags known) and detections of every training image, as COCO files
    (``out/panoptic.json`` + PNGs, ``out/detections.json``), and ``out/../presence.json``.

    Called on every rank (see the module docstring). Returns the summary on rank 0, ``None``
    on the others.
    """
    from jtsm.engine.segment import segment_image

    world, rank = get_world_size(), get_rank()
    indices = shard(len(ds))
    part = _part(out, rank)
    shutil.rmtree(part, ignore_errors=True)  # left by a run killed here
    writer = PanopticWriter(part / PANOPTIC_JSON, list(ds.categories.categories),
                            png_dir=out / PANOPTIC_PNGS)
    dets, scores, tags = [], [], []
    it: Any = indices
    if progress is not None:
        it = progress(indices, len(indices), "mined outputs")
    with _read(ds, cfg, model, indices) as reads:
        for i, (image, ps) in zip(it, reads):
            rec = ds.records[i]
            r = segment_image(model, image, ps, ds.categories, cfg, scales=cfg.input.test_scales,
                              tags=[ds.categories.index(c) for c in rec.labels],
                              image_id=rec.id)
            scores.append(r.image_scores)
            tags.append(ds.categories.tag_vector(rec.labels))
            writer.add({"id": rec.id, "file_name": rec.file_name,
                        "height": image.shape[0], "width": image.shape[1]}, r.panoptic)
            dets.append(r.detections)
    writer.close()
    atomic_write_json(part / DETECTIONS, dets)
    _save_scores(part, indices, scores, tags, ds.categories.num_classes)
    barrier()  # every part is written
    summary = None
    if is_main():
        summary = _merge_mined(out, world, ds, cfg)
        _remove_parts(out, world)
    barrier()  # the merged files are written
    return summary


def _merge_mined(out: Path, world: int, ds: MiningDataset, cfg: Config) -> dict[str, Any]:
    """Rank 0: the parts' images, annotations and detections in image order, as one process
    writes them."""
    from jtsm.data.coco_panoptic import write_panoptic_json

    by_index: dict[int, tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = {}
    for rank in range(world):
        part = _part(out, rank)
        d = read_json(part / PANOPTIC_JSON)
        dets = read_json(part / DETECTIONS)
        for i, im, ann, det in zip(range(rank, len(ds), world), d["images"], d["annotations"],
                                   dets):
            by_index[i] = (im, ann, det)
    order = [by_index[i] for i in range(len(ds))]
    write_panoptic_json(out / PANOPTIC_JSON, [o[0] for o in order],
                        [o[1] for o in order], list(ds.categories.categories))
    atomic_write_json(out / DETECTIONS, [d for o in order for d in o[2]])
    scores, tags = _merged_scores(out, world)
    _save_presence(out.parent, scores, tags, ds.categories, cfg)
    return {"images": len(order),
            "segments": int(sum(len(o[1]["segments_info"]) for o in order)),
            "detections": sum(len(o[2]) for o in order),
            "panoptic": str(out / PANOPTIC_JSON), "detections_json": str(out / DETECTIONS)}
