"""``jtsm predict``: a trained run applied to images, written in the formats evaluation reads.

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

from jtsm.data.coco_panoptic import write_panoptic_dataset
from jtsm.data.mining_dataset import select_proposals
from jtsm.engine.inference import score_proposals
from jtsm.engine.mined import detections, mine_image, present_classes
from jtsm.engine.runs import Run
from jtsm.fileio import atomic_write_json, read_image, read_json, safe_join
from jtsm.proposals.runner import list_images
from jtsm.proposals.store import ProposalStore
from jtsm.structures import PanopticSeg, ProposalSet, mask_to_rle

__all__ = ["image_records", "predict_images"]

def image_records(images: str | os.PathLike[str],
                  dataset: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """``[{id, file_name}]``: the ids of a dataset json, or every image under ``images``
    (as ``jtsm proposals`` lists them) numbered in file-name order."""
    if dataset is not None:
        list_images(images, dataset)  # checks every listed name stays inside ``images``
        return [{"id": int(r["id"]), "file_name": str(r["file_name"])}
                for r in read_json(dataset)["images"]]
    return [{"id": i + 1, "file_name": item.name}
            for i, item in enumerate(list_images(images))]


def _instances(seg: PanopticSeg, image_id: int, thing_ids: set[int]) -> list[dict[str, Any]]:
    out = []
    for s in seg.segments:
        if int(s["category_id"]) not in thing_ids:
            continue
        m = seg.ids == s["id"]
        x, y, w, h = s["bbox"]
        out.append({"image_id": image_id, "category_id": int(s["category_id"]),
                    "segmentation": mask_to_rle(m), "bbox": [x, y, w, h],
                    "score": float(s.get("score", 1.0))})
    return out


def predict_images(
    run: Run,
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None = None,
    proposals: str | os.PathLike[str] | None = None,
    tta: bool = False,
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Predict every image; returns counts. Proposals come from ``proposals`` (a store) or
    are computed with the run's proposal method."""
    cfg = run.config
    records = image_records(images, dataset)
    store = ProposalStore(proposals) if proposals is not None else None
    scales = cfg.input.test_scales if tta else cfg.input.test_scales[:1]
    cats = run.categories
    thing_ids = {cats.category_id(i) for i in range(cats.num_things)}
    out = Path(out)
    im_out, segs, insts, dets = [], [], [], []
    it: Iterable[dict[str, Any]] = records
    if progress is not None:
        it = progress(records, len(records), "predict")
    for rec in it:
        image = read_image(safe_join(images, rec["file_name"]))
        ps = _proposals(run, image, rec["file_name"], store)
        scores, image_scores = score_proposals(run.model, image, ps, scales,
                                               cfg.input.max_size, flip=tta)
        present = present_classes(image_scores, None, cfg.mined, run.presence)
        seg = mine_image(ps, scores, present, cats, cfg.mined)
        im_out.append({"id": rec["id"], "file_name": rec["file_name"],
                       "height": image.shape[0], "width": image.shape[1]})
        segs.append(seg)
        insts.extend(_instances(seg, rec["id"], thing_ids))
        dets.extend(detections(ps, scores, cats, rec["id"], cfg.mined))
    write_panoptic_dataset(out / "panoptic.json", im_out, list(cats.categories), segs)
    atomic_write_json(out / "instances.json", insts)
    atomic_write_json(out / "detections.json", dets)
    return {"images": len(im_out), "segments": int(sum(len(s.segments) for s in segs)),
            "instances": len(insts), "detections": len(dets), "out": str(out)}


def _proposals(run: Run, image: np.ndarray, name: str, store: ProposalStore | None
               ) -> ProposalSet:
    if store is not None:
        ps = store.load(name, expect_size=image.shape[:2])
    else:
        from jtsm.proposals import make_proposals

        ps = make_proposals(image, run.config.proposals, max_proposals=None)
    return select_proposals(ps, run.config.input)
