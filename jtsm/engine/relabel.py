"""``jtsm relabel``: mined segments + bottom-up evidence -> pseudo panoptic labels (Sec. 3.4).

Every mined segment (things and stuff) is re-estimated by an evidence method (a plugin; the
paper's is GrabCut): the segment itself is firm foreground, everything outside its box firm
background. The re-estimated masks are merged back into one panoptic segmentation (things over
stuff, by score). Each segment keeps its ``score``, the weight the refine stage gives it.

Per image, the result is written at once (PNG + a small json part), so a rerun after a kill
only does the images that are missing; ``panoptic.json`` is assembled at the end.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.data.coco_panoptic import load_panoptic_json, write_panoptic_png
from jtsm.engine.panoptic_merge import MergeConfig, merge_panoptic
from jtsm.fileio import atomic_write_json, read_image, read_json, safe_join
from jtsm.plugins import EvidenceMethod, get_evidence
from jtsm.structures import CategoryMap, PanopticSeg, masks_to_boxes

__all__ = ["relabel_image", "run_relabel"]


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
    merge = MergeConfig(score_threshold=0.0, overlap_threshold=0.5, stuff_area=stuff_area)
    return merge_panoptic(t_masks, t_cls, t_score, s_masks, s_cls, s_score, merge, (h, w))


def run_relabel(
    run: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    evidence: str = "grabcut",
    dataset: str | os.PathLike[str] | None = None,
    proposals: str | os.PathLike[str] | None = None,
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Relabel the mined training segments of a mining run into ``out/panoptic.json`` + PNGs.

    ``dataset`` restricts relabelling to the images it lists; ``proposals`` (a store) lends
    its superpixels to evidence methods that take them (``superpixel-snap``).

    Raises:
        DataError: the run has no mined outputs, or an image/PNG is missing or bad.
        PluginError: unknown evidence method.
    """
    method = get_evidence(evidence)
    mined = load_panoptic_json(Path(run) / "mined" / "panoptic.json")
    if dataset is not None:
        listed = {int(r["id"]) for r in read_json(dataset).get("images", [])}
        mined.images = [im for im in mined.images if int(im["id"]) in listed]
    store = None
    if proposals is not None and "superpixels" in inspect.signature(method.refine).parameters:
        from jtsm.proposals.store import ProposalStore

        store = ProposalStore(proposals)
    out = Path(out)
    png_dir, parts = out / "panoptic", out / "parts"
    done = skipped = 0
    todo: Iterable[dict[str, Any]] = mined.images
    if progress is not None:
        todo = progress(mined.images, len(mined.images), f"relabel ({evidence})")
    for im in todo:
        name = Path(im["file_name"]).with_suffix(".png").name
        part = parts / (name + ".json")
        if part.is_file() and (png_dir / name).is_file():
            skipped += 1
            continue
        image = read_image(safe_join(images, im["file_name"]))
        opts = {}
        if store is not None:
            opts["superpixels"] = store.load(im["file_name"], image.shape[:2]).superpixels
        seg = relabel_image(image, mined.read(im["id"]), mined.categories, method,
                            options=opts).with_stats()
        write_panoptic_png(png_dir / name, seg.ids)
        atomic_write_json(part, {"image_id": im["id"], "file_name": name,
                                 "segments_info": seg.segments})
        done += 1
    annotations = [read_json(parts / (Path(im["file_name"]).with_suffix(".png").name + ".json"))
                   for im in mined.images]
    atomic_write_json(out / "panoptic.json", {
        "images": mined.images, "annotations": annotations,
        "categories": list(mined.categories.categories),
        "info": {"description": f"jtsm pseudo labels: mined + {evidence}", "run": str(run)},
    })
    return {"images": len(mined.images), "relabelled": done, "already_done": skipped,
            "segments": int(sum(len(a["segments_info"]) for a in annotations)),
            "evidence": evidence, "panoptic": str(out / "panoptic.json")}
