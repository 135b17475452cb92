"""Ground truth for instance and box metrics: a COCO instances json, or a COCO panoptic one
converted (its thing segments become instances, crowd segments ``iscrowd=1``; stuff is left out).

A labels json of image-level tags (what ``jtsm data tags`` writes: images with ``labels``, no
annotations) is refused as ground truth by every loader here, saying what the metrics need.

Also loads and validates COCO results files (a list of ``{image_id, category_id, score, bbox
and/or segmentation}``), so that a bad record is reported by file and index, not by an assert
deep inside pycocotools.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jtsm.data.json_ids import check_unique_categories, check_unique_images
from jtsm.errors import DataError
from jtsm.fileio import read_json
from jtsm.optional_deps import require

if TYPE_CHECKING:
    from jtsm.data.coco_panoptic import PanopticDataset

__all__ = ["is_panoptic", "is_tags_only", "load_instances_gt", "load_panoptic_gt",
           "load_results"]


def is_panoptic(d: dict[str, Any]) -> bool:
    """Whether a loaded json is COCO panoptic (its annotations carry ``segments_info``)."""
    anns = d.get("annotations") or []
    return bool(anns) and isinstance(anns[0], dict) and "segments_info" in anns[0]


def is_tags_only(d: Any) -> bool:
    """Whether a loaded json holds image-level tags only: images carrying ``labels`` and no
    annotations (no mask or box a metric could score against)."""
    if not isinstance(d, dict) or not isinstance(d.get("images"), list) or d.get("annotations"):
        return False
    return any(isinstance(im, dict) and "labels" in im for im in d["images"])


def _tags_only_error(path: str | os.PathLike[str]) -> DataError:
    return DataError(f"{path}: holds image-level tags only (images with 'labels', no "
                     "'annotations'); PQ and proposal recall need ground-truth masks (a COCO "
                     "panoptic json), AP, mAP and CorLoc masks or boxes (a COCO panoptic or "
                     "instances json)")


def load_panoptic_gt(
    gt_json: str | os.PathLike[str], png_dir: str | os.PathLike[str] | None = None
) -> PanopticDataset:
    """:func:`jtsm.data.coco_panoptic.load_panoptic_json` for ground truth: a file it refuses
    that holds tags only (:func:`is_tags_only`) is named as such."""
    from jtsm.data.coco_panoptic import load_panoptic_json

    try:
        ds = load_panoptic_json(gt_json, png_dir)
    except DataError:
        try:
            tags_only = is_tags_only(read_json(gt_json))
        except DataError:
            tags_only = False
        if tags_only:
            raise _tags_only_error(gt_json) from None
        raise
    if not ds.annotations and is_tags_only(ds.raw):  # "annotations": [] beside the tags
        raise _tags_only_error(gt_json)
    return ds


def load_instances_gt(
    gt_json: str | os.PathLike[str],
    png_dir: str | os.PathLike[str] | None = None,
    masks: bool = True,
) -> dict[str, Any]:
    """A COCO instances dataset dict (``images``, ``annotations``, ``categories``).

    Arguments:
        gt_json: COCO instances json, or COCO panoptic json (PNGs in ``png_dir`` or beside it).
        png_dir: PNG folder of a panoptic json.
        masks: for a panoptic json, encode each thing segment as RLE (needed for mask AP); when
            False only boxes are produced (from ``segments_info`` ``bbox``, else from the PNG).

    Returns:
        The dataset; annotation ids are 1..N when converted, ``iscrowd`` and ``area`` are always
        present (a ``difficult`` or ``ignore`` flag counts as crowd). For a panoptic json,
        ``categories`` holds the thing classes only and ``stuff_categories`` the others.
    """
    gt_json = Path(gt_json)
    d = read_json(gt_json)
    if is_tags_only(d):
        raise _tags_only_error(gt_json)
    if not isinstance(d, dict) or not {"images", "annotations", "categories"} <= set(d):
        raise DataError(f"{gt_json}: expected a COCO json with images, annotations, categories")
    if is_panoptic(d):
        return _from_panoptic(gt_json, png_dir, masks)
    return _check_instances(gt_json, d)


def _check_instances(path: Path, d: dict[str, Any]) -> dict[str, Any]:
    for key in ("images", "annotations", "categories"):
        if not isinstance(d[key], list):
            raise DataError(f"{path}: '{key}' must be a list")
    check_unique_images(d["images"], str(path))
    check_unique_categories(d["categories"], str(path))
    cat_ids = {c.get("id") for c in d["categories"] if isinstance(c, dict)}
    image_ids = {im.get("id") for im in d["images"] if isinstance(im, dict)}
    anns = []
    for i, a in enumerate(d["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(a, dict) or not {"image_id", "category_id", "bbox"} <= set(a):
            raise DataError(f"{where} needs image_id, category_id and bbox")
        if a["image_id"] not in image_ids:
            raise DataError(f"{where}: image_id {a['image_id']!r} is not in images")
        if a["category_id"] not in cat_ids:
            raise DataError(f"{where} (image {a['image_id']}): unknown category id "
                            f"{a['category_id']!r}")
        a = dict(a)
        a.setdefault("id", i + 1)
        a["iscrowd"] = int(a.get("iscrowd", 0) or a.get("difficult", 0) or a.get("ignore", 0))
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
        anns.append(a)
    return {**d, "annotations": anns}


def _from_panoptic(gt_json: Path, png_dir: str | os.PathLike[str] | None, masks: bool) -> dict:
    from jtsm.data.coco_panoptic import load_panoptic_json
    from jtsm.evaluation.idmaps import read_id_png
    from jtsm.fileio import safe_join

    ds = load_panoptic_json(gt_json, png_dir)
    cats = ds.categories
    things = [c for c in cats.categories if cats.isthing(c["id"])]
    anns: list[dict[str, Any]] = []
    for image_id, ann in ds.annotations.items():
        segs = [s for s in ann["segments_info"] if cats.isthing(s["category_id"])]
        if not segs:
            continue
        need_png = masks or any("bbox" not in s for s in segs)
        ids = read_id_png(safe_join(ds.png_dir, ann["file_name"])) if need_png else None
        for s in segs:
            rec: dict[str, Any] = {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": int(s["category_id"]),
                "iscrowd": int(s.get("iscrowd", 0)),
            }
            if ids is not None:
                mask_utils = require("pycocotools.mask", "pycocotools",
                                     f"{gt_json}: instances from panoptic PNGs")
                m = np.asfortranarray((ids == int(s["id"])).astype(np.uint8))
                rle = mask_utils.encode(m)
                rec["area"] = float(mask_utils.area(rle))
                rec["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
                if masks:
                    rle["counts"] = rle["counts"].decode("ascii")
                    rec["segmentation"] = rle
            else:
                rec["bbox"] = [float(v) for v in s["bbox"]]
                rec["area"] = float(s.get("area", rec["bbox"][2] * rec["bbox"][3]))
            if rec["area"] > 0:
                anns.append(rec)
    stuff = [c for c in cats.categories if not cats.isthing(c["id"])]
    return {"images": ds.images, "annotations": anns, "categories": things,
            "stuff_categories": stuff}


def load_results(
    path: str | os.PathLike[str], gt: dict[str, Any], need: str = "bbox"
) -> list[dict[str, Any]]:
    """Load a COCO results json and check it against ``gt`` (from :func:`load_instances_gt`).

    Arguments:
        need: ``"bbox"`` (every record needs a box) or ``"any"`` (a box or an RLE mask).

    Returns:
        The records, less those of ``gt``'s ``stuff_categories`` (not evaluated); any other
        category id not in ``gt`` is an error, as are unknown images and malformed records.
    """
    path = Path(path)
    res = read_json(path)
    if not isinstance(res, list):
        raise DataError(f"{path}: expected a JSON list of COCO results (image_id, category_id, "
                        "score, bbox / segmentation)")
    images = {im["id"]: im for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    stuff_ids = {c["id"] for c in gt.get("stuff_categories", [])}
    out = []
    for i, r in enumerate(res):
        where = f"{path}: [{i}]"
        if not isinstance(r, dict) or not {"image_id", "category_id", "score"} <= set(r):
            raise DataError(f"{where} needs image_id, category_id and score")
        if r["image_id"] not in images:
            raise DataError(f"{where}: image id {r['image_id']!r} is not in the ground truth")
        if r["category_id"] in stuff_ids:
            continue
        if r["category_id"] not in cat_ids:
            raise DataError(f"{where} (image {r['image_id']}): unknown category id "
                            f"{r['category_id']!r}")
        score = r["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) \
                or not np.isfinite(score):
            raise DataError(f"{where} (image {r['image_id']}): score {score!r} is not a finite "
                            "number")
        if "bbox" in r:
            b = r["bbox"]
            if not (isinstance(b, list) and len(b) == 4 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)):
                raise DataError(f"{where} (image {r['image_id']}): bbox must be [x, y, w, h], "
                                f"got {b!r:.80}")
            if not all(np.isfinite(v) for v in b) or not (b[2] > 0 and b[3] > 0):
                raise DataError(f"{where} (image {r['image_id']}): bbox {b!r:.80} needs finite "
                                "numbers and a width and height > 0")
        elif need == "bbox":
            raise DataError(f"{where}: no bbox")
        if "segmentation" in r:
            _check_rle(r, images[r["image_id"]], where)
        elif "bbox" not in r:
            raise DataError(f"{where}: needs a bbox or a segmentation")
        out.append(r)
    return out


def _check_rle(record: dict[str, Any], image: dict[str, Any], where: str) -> None:
    """The record's ``segmentation``: a COCO RLE of the image's size whose counts decode to a
    mask of that size (:mod:`jtsm.evaluation.rle`); list counts are replaced by the compressed
    string pycocotools reads."""
    from jtsm.evaluation.rle import check_rle_counts

    seg = record["segmentation"]
    if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
        raise DataError(f"{where}: segmentation must be COCO RLE {{size, counts}}")
    if "height" in image and "width" in image:
        if not isinstance(seg["size"], list) or seg["size"] != [image["height"], image["width"]]:
            raise DataError(
                f"{where} (image {image['id']}): mask size {seg['size']!r:.40} differs from the "
                f"image's {[image['height'], image['width']]}"
            )
    try:
        counts = check_rle_counts(seg)
    except ValueError as exc:
        raise DataError(f"{where} (image {image['id']}): undecodable RLE mask ({exc})") from None
    if counts is not seg["counts"]:
        record["segmentation"] = {**seg, "counts": counts}
