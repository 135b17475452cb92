"""``jtsm viz``: panels of any COCO panoptic json (ground truth, mined segments, pseudo labels,
predictions) over its images, optionally beside a ground truth json.

For each image of the json: ``OUT/<name>.png`` (``image | segments | ground truth``, see
:mod:`jtsm.engine.panoptic_viz`) and ``OUT/<name>.json`` (titles, legend, score threshold),
``<name>.png`` being the image's output name (:func:`jtsm.data.output_names.output_name`, the
name of its panoptic PNG too: ``a/img.jpg`` -> ``a/img.png``, ``x.png`` -> ``x.png.png``).

The json's column is titled after what made it (:func:`describe`): ``prediction`` (a ``jtsm
predict`` folder), ``pseudo labels`` (``jtsm relabel``), ``mined segments`` (a mining run's
``mined/``) or ``ground truth`` (a dataset: no record of a stage, no scores).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jtsm.data.coco_panoptic import PanopticDataset, load_panoptic_json
from jtsm.data.images import image_root
from jtsm.data.output_names import check_output_names, output_name
from jtsm.engine.panoptic_viz import MIN_SCORE, check_min_score, write_panel
from jtsm.errors import DataError
from jtsm.fileio import read_image, safe_join
from jtsm.rundir.layout import MINED, read_meta
from jtsm.rundir.outputs import OutputFolder, check_apart

__all__ = ["describe", "panel_name", "visualise"]

#: A folder's ``meta.json`` stage -> the title of its json's column and whether it holds
#: labels (drawn whole, never thresholded by score).
STAGE_TITLES: dict[str, tuple[str, bool]] = {
    "predict": ("prediction", False),
    "relabel": ("pseudo labels", True),
}


def panel_name(file_name: str) -> str:
    """The panel of image ``file_name``, relative to the panel folder: its output name
    (:func:`jtsm.data.output_names.output_name`; ``a/b/c.jpg`` -> ``a/b/c.png``), whose
    legend is the same name with ``.json`` for ``.png``."""
    return output_name(file_name)


def _stage(folder: Path) -> str | None:
    meta = read_meta(folder)
    return str(meta.get("stage")) if meta is not None and "stage" in meta else None


def describe(panoptic: str | os.PathLike[str], ds: PanopticDataset,
             gt: str | os.PathLike[str] | None = None) -> tuple[str, bool]:
    """What a panoptic json holds: ``(title of its column, whether it holds labels)``.

    From the ``meta.json`` of its folder (``predict``: ``prediction``; ``relabel``: ``pseudo
    labels``), of a mining run (``RUN/mined/``: ``mined segments``); ``ground truth`` when it
    is the ``gt`` file, or when nothing records a stage and no segment has a score (a
    dataset); ``segments`` otherwise.
    """
    path = Path(panoptic)
    if gt is not None and path.resolve() == Path(gt).resolve():
        return "ground truth", True
    stage = _stage(path.parent)
    if stage is not None:
        return STAGE_TITLES.get(stage, ("segments", False))
    if path.parent.name == MINED and _stage(path.parent.parent) == "mine":
        return "mined segments", False
    scored = any("score" in s for ann in ds.annotations.values()
                 for s in ann.get("segments_info", ()))
    return ("segments", False) if scored else ("ground truth", True)


def visualise(
    panoptic: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    gt: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    title: str | None = None,
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
    min_score: float = MIN_SCORE,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a panel per image of ``panoptic`` (the first ``limit``); returns counts.

    Ground-truth images are matched by file name. Category names come from ``panoptic``'s
    categories (``gt``'s fill in ids it lacks). ``title`` names the json's column (``None``:
    from what made it, :func:`describe`). Segments scored below ``min_score`` are not drawn,
    unless the json holds labels (pseudo labels, ground truth).

    ``out`` follows :mod:`jtsm.rundir.outputs`, checked before the first panel: it may not be, lie
    inside or contain the images, a json or its PNG folder; it is a new or empty folder, or one
    an earlier ``viz`` wrote (its record ``OUT/.jtsm-viz``), whose panels the new ones replace
    as a set; any other folder, or a file of a panel's name that viz did not write, is refused
    unless ``overwrite`` (which replaces files of the panels' names and keeps the others).

    Raises:
        JtsmError: ``min_score`` is not a number in [0, 1]; ``out`` is refused (above).
        DataError: a json, PNG or image that cannot be read, or a segment score that is not a
            number (naming it).
    """
    min_score = check_min_score(min_score)
    pred = load_panoptic_json(panoptic)
    truth = load_panoptic_json(gt) if gt is not None else None
    auto_title, labels = describe(panoptic, pred, gt)
    title = title or auto_title
    root = image_root(images)
    cats = {int(c["id"]): c for c in (truth.categories.categories if truth else ())}
    cats.update({int(c["id"]): c for c in pred.categories.categories})
    by_name = {str(im["file_name"]): int(im["id"]) for im in truth.images} if truth else {}
    records = [im for im in pred.images if int(im["id"]) in pred.annotations]
    if not records:
        raise DataError(f"{panoptic}: no image has an annotation to draw")
    records = records[:limit] if limit is not None else records
    check_output_names((str(im["file_name"]) for im in records), panoptic)
    sources = [safe_join(root, str(im["file_name"])) for im in records]
    folder = _claim(out, images, records, sources, panoptic, pred, gt, truth, overwrite)
    with folder.staged() as stage:
        n_gt, hidden = _draw(records, sources, pred, truth, by_name, list(cats.values()), title,
                             min_score, labels, stage, panoptic, progress)
    return {"panels": len(records), "with_ground_truth": n_gt, "title": title,
            "min_score": None if labels else min_score, "hidden": hidden, "out": str(out)}


def _claim(out: str | os.PathLike[str], images: str | os.PathLike[str],
           records: list[dict[str, Any]], sources: list[Path],
           panoptic: str | os.PathLike[str], pred: PanopticDataset,
           gt: str | os.PathLike[str] | None, truth: PanopticDataset | None,
           overwrite: bool) -> OutputFolder:
    """The checks of ``out`` before any panel is drawn (see :func:`visualise`)."""
    image_input: list[Path] = [Path(images)] + ([] if Path(images).is_dir() else sources)
    check_apart(out, {"--images": image_input,
                      "--panoptic": [Path(panoptic), pred.png_dir],
                      "--gt": None if truth is None else [Path(str(gt)), truth.png_dir]})
    names = []
    for file in (panel_name(str(im["file_name"])) for im in records):
        names += [file, Path(file).with_suffix(".json").as_posix()]
    return OutputFolder.claim(out, "viz", names, overwrite)


def _draw(records: list[dict[str, Any]], sources: list[Path], pred: PanopticDataset,
          truth: PanopticDataset | None, by_name: dict[str, int],
          categories: list[dict[str, Any]], title: str, min_score: float, labels: bool,
          out: Path, panoptic: str | os.PathLike[str],
          progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None
          ) -> tuple[int, int]:
    """Write the panels into ``out``; returns (panels with ground truth, hidden segments)."""
    it: Iterable[tuple[dict[str, Any], Path]] = list(zip(records, sources))
    if progress is not None:
        it = progress(it, len(records), "viz")
    n_gt = hidden = 0
    for im, source in it:
        image = read_image(source)
        seg = pred.read(int(im["id"]))
        tseg = None
        if truth is not None and str(im["file_name"]) in by_name:
            gid = by_name[str(im["file_name"])]
            if gid in truth.annotations:
                tseg = truth.read(gid)
                n_gt += 1
        path = out / panel_name(str(im["file_name"]))
        try:
            info = write_panel(path, image, seg, tseg, categories,
                               ("image", title, "ground truth"), min_score, (labels, True))
        except DataError as exc:  # a bad score: name the json and the image
            raise DataError(f"{panoptic}: image {im['file_name']}: {exc}") from None
        hidden += sum(info["hidden"].values())
    return n_gt, hidden
