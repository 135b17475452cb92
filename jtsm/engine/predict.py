"""``jtsm predict``: a trained run applied to images, written in the formats evaluation reads.

A mining run predicts mined segments (top proposals); a refine run predicts with the instance
and semantic branches (:mod:`jtsm.engine.panoptic_inference`).

Outputs in ``OUT``: ``panoptic.json`` + ``panoptic/`` PNGs (COCO panoptic), ``instances.json``
(COCO results with RLE masks, one per thing segment) and ``detections.json`` (COCO results with
boxes). Image ids come from ``--dataset`` when given, so ``jtsm eval`` can match them to ground
truth; otherwise images are numbered in file-name order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.data.coco_panoptic import PanopticDataset, PanopticWriter
from jtsm.data.images import image_root
from jtsm.data.json_ids import json_id
from jtsm.data.mining_dataset import select_proposals
from jtsm.data.output_names import check_output_names
from jtsm.engine.panoptic_viz import MIN_SCORE
from jtsm.engine.runs import Run
from jtsm.engine.segment import segment_image, thing_segments
from jtsm.errors import DataError
from jtsm.fileio import JsonListWriter, pixel_limit, read_image_and_size, read_json, safe_join
from jtsm.proposals.runner import list_images
from jtsm.proposals.store import ProposalStore, store_digest
from jtsm.rundir.layout import (
    DETECTIONS,
    INSTANCES,
    META,
    PANOPTIC_JSON,
    PREDICT_ENTRIES,
    VIZ,
    RunDir,
)
from jtsm.structures import CategoryMap, PanopticSeg, ProposalSet, mask_to_rle

__all__ = ["image_records", "predict_images", "predict_one"]

def image_records(images: str | os.PathLike[str],
                  dataset: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """``[{id, file_name}]``: the ids of a dataset json, or every image under ``images``
    (as ``jtsm proposals`` lists them) numbered in file-name order."""
    if dataset is not None:
        items = list_images(images, dataset)  # file names: strings inside ``images``
        out, seen = [], set()
        for i, (r, item) in enumerate(zip(read_json(dataset)["images"], items)):
            rid = json_id(r.get("id"), f"{dataset}: images[{i}].id")
            if rid in seen or item.name in seen:
                raise DataError(f"{dataset}: images[{i}]: image id {rid} or file "
                                f"{item.name!r} listed twice")
            seen.update((rid, item.name))
            out.append({"id": rid, "file_name": item.name})
        return out
    return [{"id": i + 1, "file_name": item.name}
            for i, item in enumerate(list_images(images))]


def _instances(seg: PanopticSeg, image_id: int, cats: CategoryMap) -> list[dict[str, Any]]:
    """COCO instance results (RLE masks) of the thing segments of ``seg``."""
    return [{"image_id": image_id, "category_id": int(s["category_id"]),
             "segmentation": mask_to_rle(m), "bbox": list(s["bbox"]),
             "score": float(s.get("score", 1.0))} for s, m in thing_segments(seg, cats)]


def predict_images(
    run: Run,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None = None,
    proposals: str | os.PathLike[str] | None = None,
    tta: bool = False,
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
    viz: int = 0,
    min_score: float = MIN_SCORE,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Predict every image into ``out`` (see :func:`_predict_into` for the files).

    ``out`` follows the rule of every stage (:func:`jtsm.rundir.fingerprint.check_folder`):
    a new or empty folder is written; one holding the predictions of this same job is left as
    it is (the summary says ``"done_before": True``); one holding anything else of a
    prediction's (another run's, other images, other options, files of the same names) is
    refused, naming the difference, unless ``overwrite``. The outputs are written into a
    hidden sibling folder and replace the previous ones of ``out`` as a set at the end
    (:mod:`jtsm.rundir.staging`): a run that fails on a bad image, or is killed, leaves the
    previous results whole. ``OUT/meta.json`` records what made them (the run's id, the
    images, the dataset and the options).

    Raises:
        JtsmError: ``out`` is the run folder or its mined outputs, is (or is inside) the image
            folder or the proposal store, or holds another job's predictions without
            ``overwrite``.
    """
    from jtsm.fileio import atomic_write_json
    from jtsm.rundir import fingerprint as fpr
    from jtsm.rundir.staging import staged_folder

    final = Path(out)
    if final.resolve() in (Path(run.path).resolve(), RunDir(run.path).mined.resolve()):
        raise DataError(f"--out {out} is the run folder or its mined outputs (--run "
                        f"{run.path}); writing there would replace them: choose another --out")
    # an image folder that held the outputs would read them back as images on the next run
    fpr.check_not_inside(final, "--out", {"--images": images if Path(images).is_dir() else None,
                                          "--proposals": proposals})
    records = image_records(images, dataset)
    check_output_names((r["file_name"] for r in records), dataset or images)
    inputs = {"run": fpr.input_record(run.path, run.meta.get("run_id")),
              "images": fpr.input_record(images, fpr.images_digest(
                  image_root(images), [r["file_name"] for r in records])),
              "dataset": fpr.input_record(dataset, fpr.file_digest(dataset) if dataset else None),
              "proposals": fpr.input_record(proposals, store_digest(proposals))}
    fp = fpr.fingerprint("predict", inputs, {"tta": tta, "viz": viz,
                                             "min_score": min_score if viz else None})
    action = fpr.check_folder(final, fp, resume=False, overwrite=overwrite,
                              what="prediction", markers=PREDICT_ENTRIES, resume_implied=True)
    if action == "resume":  # the same job's outputs, whole (they are swapped in as a set)
        meta = read_json(final / META)
        return {**meta.get("summary", {}), "out": str(final), "done_before": True}
    with staged_folder(final, PREDICT_ENTRIES) as stage:
        summary = _predict_into(run, images, stage, dataset, proposals, tta, progress, viz,
                                records, min_score)
        atomic_write_json(stage / META, {"stage": "predict", "fingerprint": fp,
                                                "summary": {k: v for k, v in summary.items()
                                                            if k != "out"}}, indent=2)
    summary["out"] = str(final)
    return summary


def _predict_into(run: Run, images: str | os.PathLike[str], out: Path,
                  dataset: str | os.PathLike[str] | None, proposals: str | os.PathLike[str] | None,
                  tta: bool, progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None,
                  viz: int, records: list[dict[str, Any]], min_score: float = MIN_SCORE
                  ) -> dict[str, Any]:
    """:func:`predict_images`' work, into the staging folder ``out``; returns counts.
    Proposals come from ``proposals`` (a store) or are computed with the run's proposal method.
    ``viz``: the first ``viz`` images also get ``OUT/viz/<name>.png`` (image | prediction |
    ground truth when ``dataset`` is panoptic), segments scored below ``min_score`` undrawn.

    Memory stays flat over any number of images: each PNG is written when its image is done,
    and the result lists go to disk as they grow. The three json files are written last. An
    image read downscaled (over :data:`jtsm.fileio.MAX_SIDE`) is answered at its own size.
    """
    root = image_root(images)  # a folder, one image file or a list file
    store = ProposalStore(proposals) if proposals is not None else None
    cats = run.categories
    out = Path(out)
    panoptic = PanopticWriter(out / PANOPTIC_JSON, list(cats.categories))
    insts, dets = JsonListWriter(out / INSTANCES), JsonListWriter(out / DETECTIONS)
    gt = _ground_truth(dataset) if viz else None
    it: Iterable[dict[str, Any]] = records
    if progress is not None:
        it = progress(records, len(records), "predict")
    for rec in it:
        path = safe_join(root, rec["file_name"])
        image, size = read_image_and_size(path)
        ps = _proposals(run, image, rec["file_name"], path, store)
        seg, found = predict_one(run, image, ps, tta, rec["id"])
        seg, found = _own_size(seg, found, image.shape[:2], size)
        if len(panoptic.images) < viz:
            _write_viz(out, rec, image, seg, gt, cats, min_score)
        panoptic.add({"id": rec["id"], "file_name": rec["file_name"],
                      "height": seg.image_size[0], "width": seg.image_size[1]}, seg)
        insts.extend(_instances(seg, rec["id"], cats))
        dets.extend(found)
    insts.close()
    dets.close()
    panoptic.close()
    return {"images": len(panoptic.images), "segments": panoptic.num_segments,
            "instances": insts.count, "detections": dets.count, "out": str(out)}


def predict_one(run: Run, image: np.ndarray, ps: ProposalSet, tta: bool = False,
                image_id: int = 0) -> tuple[PanopticSeg, list[dict[str, Any]]]:
    """One image's panoptic segmentation and detections (COCO result dicts, ``image_id``).

    Arguments:
        image: RGB uint8 ``(H, W, 3)``.
        ps: its proposals, as :func:`jtsm.data.mining_dataset.select_proposals` keeps them.
        tta: average all ``input.test_scales`` and horizontal flips (else the first scale).
    Returns:
        the segmentation (``(H, W)`` ids; segments with ``score``) and the detections.
    """
    cfg = run.config
    scales = cfg.input.test_scales if tta else cfg.input.test_scales[:1]
    r = segment_image(run.model, image, ps, run.categories, cfg, scales=scales, flip=tta,
                      presence=run.presence, image_id=image_id)
    return r.panoptic, r.detections


def _own_size(seg: PanopticSeg, dets: list[dict[str, Any]], shape: tuple[int, int],
              size: tuple[int, int]) -> tuple[PanopticSeg, list[dict[str, Any]]]:
    """Segments and boxes of an image that was read downscaled, at the file's own ``size``
    (up to :func:`jtsm.fileio.pixel_limit` pixels; larger ones stay at the read size)."""
    (h, w), (h0, w0) = shape, size
    if (h, w) == (h0, w0) or h0 * w0 > pixel_limit():
        return seg, dets
    import cv2

    ids = cv2.resize(seg.ids.astype(np.int32), (w0, h0), interpolation=cv2.INTER_NEAREST)
    sx, sy = w0 / w, h0 / h
    for d in dets:
        x, y, bw, bh = d["bbox"]
        d["bbox"] = [x * sx, y * sy, bw * sx, bh * sy]
    return PanopticSeg(ids, seg.segments).with_stats(), dets


def _proposals(run: Run, image: np.ndarray, name: str, path: Path,
               store: ProposalStore | None) -> ProposalSet:
    """The image's proposals: from the store (made from this version of the file), or made
    with the run's method."""
    if store is not None:
        ps = store.load(name, expect_size=image.shape[:2])  # another size: said first
        store.check_source(name, path)
    else:
        from jtsm.proposals import make_proposals

        ps = make_proposals(image, run.config.proposals, max_proposals=None)
    return select_proposals(ps, run.config.input)


def _write_viz(out: Path, rec: dict[str, Any], image: np.ndarray, seg: PanopticSeg,
               gt: PanopticDataset | None, categories: CategoryMap | None = None,
               min_score: float = MIN_SCORE) -> None:
    """``OUT/viz/<name>.png``: image | prediction | ground truth (when ``gt`` has the image),
    segments named after ``categories``, with ``OUT/viz/<name>.json`` (the legend); ``<name>``
    as the image's PNG (:func:`jtsm.engine.viz.panel_name`)."""
    from jtsm.engine.panoptic_viz import write_panel

    truth = gt.read(int(rec["id"])) if gt is not None and int(rec["id"]) in gt.annotations \
        else None
    if truth is not None and truth.image_size != image.shape[:2]:
        import cv2

        h, w = image.shape[:2]
        ids = cv2.resize(truth.ids.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
        truth = PanopticSeg(ids, truth.segments)
    if seg.image_size != image.shape[:2]:
        import cv2

        image = cv2.resize(image, seg.image_size[::-1], interpolation=cv2.INTER_LINEAR)
    from jtsm.engine.viz import panel_name

    write_panel(out / VIZ / panel_name(rec["file_name"]), image, seg, truth,
                categories, min_score=min_score)


def _ground_truth(dataset: str | os.PathLike[str] | None) -> PanopticDataset | None:
    """The dataset as panoptic ground truth, or ``None`` when it has no masks."""
    from jtsm.data.coco_panoptic import load_panoptic_json
    from jtsm.errors import DataError

    if dataset is None:
        return None
    try:
        return load_panoptic_json(dataset)
    except DataError:
        return None
