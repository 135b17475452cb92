"""``jtsm relabel``: mined segments + bottom-up evidence -> pseudo panoptic labels (Sec. 3.4).

Every mined segment (things and stuff) is re-estimated by an evidence method (a plugin; the
paper's is GrabCut): the segment itself is firm foreground, everything outside its box firm
background. The re-estimated masks are merged back into one panoptic segmentation (things over
stuff, by score). Each segment keeps its ``score``, the weight the refine stage gives it.

Per image, the result is written at once (PNG + a small json part), so a rerun after a kill
only does the images that are missing; ``panoptic.json`` is assembled at the end. The folder
records its job (``OUT/meta.json``: the mining run's id, the mined labels' digest, the images,
the evidence method and the proposal store it used) and every part carries the job's digest,
so a part left by another run or another ``--evidence`` is never taken for done: such a folder
is refused unless ``overwrite`` replaces it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.data.coco_panoptic import load_panoptic_json, write_panoptic_png
from jtsm.data.output_names import check_output_names, output_name
from jtsm.engine.panoptic_merge import MergeConfig, merge_panoptic
from jtsm.errors import DataError
from jtsm.fileio import atomic_write_json, read_image, read_json, safe_join
from jtsm.plugins import (
    EvidenceMethod,
    for_workers,
    from_worker,
    get_evidence,
    takes_keyword,
)
from jtsm.proposals.store import store_digest
from jtsm.rundir.layout import META, PANOPTIC_JSON, PANOPTIC_PNGS, RELABEL_ENTRIES, RunDir
from jtsm.structures import CategoryMap, PanopticSeg, masks_to_boxes
from jtsm.worker_pool import run_pool, worker_count

__all__ = ["relabel_image", "run_relabel", "sample_images"]


def relabel_image(image: np.ndarray, mined: PanopticSeg, categories: CategoryMap,
                  evidence: EvidenceMethod, stuff_area: int = 16,
                  options: dict[str, Any] | None = None) -> PanopticSeg:
    """Re-estimate every mined segment of one image with ``evidence`` and merge them.

    Arguments:
        image: ``(H, W, 3)`` uint8 RGB; mined: its mined segmentation (segments with scores).
    Returns:
        the pseudo label; segments keep ``category_id`` and ``score``.
    """
    h, w = mined.image_size
    t_masks, t_cls, t_score, s_masks, s_cls, s_score = [], [], [], [], [], []
    for s in mined.segments:
        fg = mined.ids == s["id"]
        box = masks_to_boxes(fg[None])[0]
        mask = np.asarray(evidence.refine(image, fg, box, None, **(options or {})), bool)
        score = float(s.get("score", 1.0))
        if categories.isthing(s["category_id"]):
            t_masks.append(mask)
            t_cls.append(int(s["category_id"]))
            t_score.append(score)
        else:
            s_masks.append(mask)
            s_cls.append(int(s["category_id"]))
            s_score.append(score)
    merge = MergeConfig(stuff_area=stuff_area)
    return merge_panoptic(t_masks, t_cls, t_score, s_masks, s_cls, s_score, merge, (h, w))


_JOB: dict[str, Any] = {}


def _init_worker(job: dict[str, Any]) -> None:
    """Per-process state: the mined dataset, the evidence method, the proposal store."""
    import cv2

    cv2.setNumThreads(1)
    _JOB.clear()
    _JOB.update(job)
    _JOB["mined"] = load_panoptic_json(job["mined_json"])
    _JOB["method"] = from_worker(job["evidence"], get_evidence)
    if job["proposals"] is not None:
        from jtsm.proposals.store import ProposalStore

        _JOB["store"] = ProposalStore(job["proposals"])


def _relabel_one(im: dict[str, Any]) -> int:
    """Relabel one image and write its PNG and json part (each atomically)."""
    mined, out = _JOB["mined"], Path(_JOB["out"])
    name = output_name(im["file_name"])
    image = read_image(safe_join(_JOB["images"], im["file_name"]))
    opts = {}
    if "store" in _JOB:
        opts["superpixels"] = _JOB["store"].load(im["file_name"], image.shape[:2]).superpixels
    seg = relabel_image(image, mined.read(im["id"], complete=True), mined.categories,
                        _JOB["method"], options=opts).with_stats()
    write_panoptic_png(out / PANOPTIC_PNGS / name, seg.ids)
    atomic_write_json(out / "parts" / (name + ".json"),
                      {"image_id": im["id"], "file_name": name, "segments_info": seg.segments,
                       "job": _JOB["job"]})
    return 1


#: What ``overwrite`` removes from a relabel folder.


def _part_job(path: Path) -> str | None:
    """The job digest a part records (``None``: no part, or an unreadable one)."""
    try:
        part = read_json(path)
    except DataError:
        return None
    return part.get("job") if isinstance(part, dict) else None


def _claim(out: Path, run: str | os.PathLike[str], mined_json: Path,
           images: str | os.PathLike[str], records: list[dict[str, Any]],
           dataset: str | os.PathLike[str] | None, evidence: str,
           proposals: str | os.PathLike[str] | None, overwrite: bool) -> str:
    """Check ``out`` against this job before anything is written (clear it with
    ``overwrite``), record the job in ``out/meta.json``; returns the digest parts carry."""
    from jtsm.rundir import fingerprint as fpr

    fpr.check_not_inside(out, "--out", {"--run": run})
    inputs = {"run": fpr.input_record(run, fpr.run_id_of(run)),
              "mined": fpr.input_record(mined_json, fpr.file_digest(mined_json)),
              "images": fpr.input_record(images, fpr.names_digest(
                  f"{im['id']}:{im['file_name']}" for im in records))}
    if dataset is not None:
        inputs["dataset"] = fpr.input_record(dataset)
    fp = fpr.fingerprint("relabel", inputs, {"evidence": evidence,
                                             "proposals": store_digest(proposals)})
    action = fpr.check_folder(out, fp, resume=False, overwrite=overwrite, what="relabel output",
                              markers=RELABEL_ENTRIES, resume_implied=True)
    if action == "overwrite":
        fpr.clear_folder(out, RELABEL_ENTRIES, "relabel output")
    if action != "resume":
        atomic_write_json(out / META, {"stage": "relabel", "fingerprint": fp}, indent=2)
    return fpr.fingerprint_digest(fp)


def sample_images(images: list[dict[str, Any]], max_images: int | None,
                  seed: int = 0) -> list[dict[str, Any]]:
    """``max_images`` of ``images`` drawn at random with ``seed`` (all of them when there are
    no more, or ``max_images`` is ``None``), in their original order."""
    if max_images is not None and max_images < 1:
        raise DataError(f"max_images must be at least 1, got {max_images}")
    if max_images is None or len(images) <= max_images:
        return list(images)
    keep = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7]).choice(
        len(images), max_images, replace=False)
    return [images[i] for i in sorted(keep.tolist())]


def _listed_ids(dataset: str | os.PathLike[str]) -> set[int]:
    """Image ids of a COCO-style json (``images[].id``); a malformed one names the file."""
    d = read_json(dataset)
    recs = d.get("images") if isinstance(d, dict) else None
    if not isinstance(recs, list):
        raise DataError(f"{dataset}: no 'images' list")
    ids = set()
    for i, r in enumerate(recs):
        rid = r.get("id") if isinstance(r, dict) else None
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise DataError(f"{dataset}: images[{i}].id must be an integer, got {rid!r:.40}")
        ids.add(rid)
    return ids


def run_relabel(
    run: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    evidence: str = "grabcut",
    dataset: str | os.PathLike[str] | None = None,
    proposals: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
    max_images: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Relabel the mined training segments of a mining run into ``out/panoptic.json`` + PNGs.

    ``dataset`` restricts relabelling to the images it lists; ``proposals`` (a store) lends
    its superpixels to evidence methods that take them (``superpixel-snap``). ``workers``
    processes (default: every core this process may use, :mod:`jtsm.worker_pool`);
    ``shard=(i, n)`` does every n-th image from the i-th, and
    ``panoptic.json`` is written once every image's part exists (by the last shard to finish,
    or by any rerun). ``max_images``: relabel only a random sample of that many images
    (drawn with ``seed``, kept in the mined order), for a refine run that reads no more
    (``panoptic.json`` then lists the sample; a rerun draws the same one). ``overwrite``:
    replace what another job left in ``out`` instead of refusing it.

    Raises:
        DataError: the run has no mined outputs, or an image/PNG is missing or bad.
        JtsmError: ``out`` is the run or inside it, or holds another job's labels.
        PluginError: unknown evidence method.
    """
    method = get_evidence(evidence)
    mined_json = RunDir(run).mined_json
    mined = load_panoptic_json(mined_json)
    if dataset is not None:
        listed = _listed_ids(dataset)
        mined.images = [im for im in mined.images if int(im["id"]) in listed]
    available = len(mined.images)
    mined.images = sample_images(mined.images, max_images, seed)
    takes_superpixels = takes_keyword(method.refine, "superpixels", through_kwargs=False)
    out = Path(out)
    check_output_names((im["file_name"] for im in mined.images), mined_json)
    job = _claim(out, run, mined_json, images, mined.images, dataset, evidence,
                 proposals if takes_superpixels else None, overwrite)

    def part_of(im: dict[str, Any]) -> Path:
        return out / "parts" / (output_name(im["file_name"]) + ".json")

    def done(im: dict[str, Any]) -> bool:
        return _part_job(part_of(im)) == job and \
            (out / PANOPTIC_PNGS / output_name(im["file_name"])).is_file()

    for im in mined.images:  # names that leave the image folder fail here, not in a worker
        try:
            safe_join(images, im["file_name"])
        except DataError as exc:
            raise DataError(f"{mined_json}: {exc}") from None
    mine_share = mined.images[shard[0]::shard[1]]
    todo = [im for im in mine_share if not done(im)]
    spec = {"mined_json": str(mined_json), "evidence": for_workers(method, evidence),
            "images": str(images),
            "out": str(out), "proposals": str(proposals) if proposals and takes_superpixels
            else None, "job": job}
    n = worker_count(workers, len(todo))
    label = f"relabel ({evidence})"
    results: Iterable[int]
    if n <= 1:
        _init_worker(spec)
        results = map(_relabel_one, todo)
    else:  # workers end with this process; SIGTERM ends them, leaving the parts done so far
        results = run_pool(_relabel_one, todo, n, _init_worker, (spec,),
                           name=lambda im: str(im["file_name"]), doing="relabelling")
    for _ in (progress(results, len(todo), label) if progress else results):
        pass
    summary: dict[str, Any] = {"images": len(mine_share), "sampled_from": available,
                               "relabelled": len(todo),
                               "already_done": len(mine_share) - len(todo), "evidence": evidence}
    missing = sum(1 for im in mined.images if not done(im))
    if missing:
        summary.update(complete=False, missing=missing)
        return summary
    annotations = [{k: v for k, v in read_json(part_of(im)).items() if k != "job"}
                   for im in mined.images]
    atomic_write_json(out / PANOPTIC_JSON, {
        "images": mined.images, "annotations": annotations,
        "categories": list(mined.categories.categories),
        "info": {"description": f"jtsm pseudo labels: mined + {evidence}", "run": str(run)},
    })
    summary.update(complete=True, panoptic=str(out / PANOPTIC_JSON),
                   segments=int(sum(len(a["segments_info"]) for a in annotations)))
    return summary
