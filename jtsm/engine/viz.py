"""``jtsm viz``: panels of any COCO panoptic json (ground truth, mined segments, pseudo labels,
predictions) over its images, optionally beside a ground truth json.

For each image of the json: ``OUT/<name>.png`` (``image | segments | ground truth``, see
:mod:`jtsm.engine.panoptic_viz`) and ``OUT/<name>.json`` (titles and legend), ``<name>`` being
the image's file name without extension (folders joined with ``__``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.images import image_root
from jtsm.engine.panoptic_viz import write_panel
from jtsm.errors import DataError
from jtsm.fileio import read_image, safe_join

__all__ = ["panel_name", "visualise"]


def panel_name(file_name: str) -> str:
    """``a/b/c.jpg`` -> ``a__b__c``: one flat, collision-free name per image."""
    return Path(file_name).with_suffix("").as_posix().replace("/", "__")


def visualise(
    panoptic: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    gt: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    title: str = "prediction",
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
) -> dict[str, Any]:
    """Write a panel per image of ``panoptic`` (the first ``limit``); returns counts.

    Ground-truth images are matched by file name. Category names come from ``panoptic``'s
    categories (``gt``'s fill in ids it lacks).

    Raises:
        DataError: a json, PNG or image that cannot be read (naming it).
    """
    pred = load_panoptic_json(panoptic)
    truth = load_panoptic_json(gt) if gt is not None else None
    root = image_root(images)
    cats = {int(c["id"]): c for c in (truth.categories.categories if truth else ())}
    cats.update({int(c["id"]): c for c in pred.categories.categories})
    by_name = {str(im["file_name"]): int(im["id"]) for im in truth.images} if truth else {}
    records = [im for im in pred.images if int(im["id"]) in pred.annotations]
    if not records:
        raise DataError(f"{panoptic}: no image has an annotation to draw")
    records = records[:limit] if limit is not None else records
    it: Iterable[dict[str, Any]] = records
    if progress is not None:
        it = progress(records, len(records), "viz")
    out = Path(out)
    n_gt = 0
    for im in it:
        image = read_image(safe_join(root, str(im["file_name"])))
        seg = pred.read(int(im["id"]))
        tseg = None
        if truth is not None and str(im["file_name"]) in by_name:
            gid = by_name[str(im["file_name"])]
            if gid in truth.annotations:
                tseg = truth.read(gid)
                n_gt += 1
        write_panel(out / f"{panel_name(str(im['file_name']))}.png", image, seg, tseg,
                    list(cats.values()), ("image", title, "ground truth"))
    return {"panels": len(records), "with_ground_truth": n_gt, "out": str(out)}
