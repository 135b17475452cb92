"""Image-level labels, the only supervision JTSM trains on.

Three kinds of json give them, detected from their content:

- **COCO panoptic**: ``annotations[*].segments_info[*].category_id`` (crowd segments count:
  the class occurs in the image);
- **COCO instances**: ``annotations[*]`` with ``image_id`` and ``category_id``;
- **labels json**: ``images[*].labels``, a list of category ids or names (no masks at
  all); ``jtsm data tags`` writes one from a CSV/TSV of tags.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jtsm.data.json_ids import check_unique_categories, json_id
from jtsm.errors import DataError
from jtsm.fileio import read_json
from jtsm.structures import CategoryMap

__all__ = ["ImageLabels", "LabelSet", "read_image_labels", "detect_kind"]


@dataclass(frozen=True)
class ImageLabels:
    """One image and the category ids it is tagged with (sorted, unique)."""

    id: int
    file_name: str
    height: int | None
    width: int | None
    labels: tuple[int, ...]


@dataclass(frozen=True)
class LabelSet:
    """All images of a json with their tags, and the categories (things first)."""

    path: Path
    kind: str
    categories: CategoryMap
    images: tuple[ImageLabels, ...]

    def __len__(self) -> int:
        return len(self.images)

    def tagged(self) -> tuple[ImageLabels, ...]:
        """Images with at least one tag (untagged ones carry no training signal)."""
        return tuple(im for im in self.images if im.labels)


def detect_kind(d: dict[str, Any]) -> str:
    """``"panoptic"``, ``"instances"`` or ``"labels"`` from a loaded json's content."""
    anns = d.get("annotations")
    if isinstance(anns, list) and anns and isinstance(anns[0], dict):
        if "segments_info" in anns[0]:
            return "panoptic"
        if "category_id" in anns[0]:
            return "instances"
    images = d.get("images")
    if isinstance(images, list) and any(isinstance(im, dict) and "labels" in im for im in images):
        return "labels"
    if isinstance(anns, list) and not anns:
        return "labels"  # no annotations at all: every image untagged unless it lists labels
    raise DataError("cannot tell the json's kind: expected panoptic segments_info, "
                    "instance annotations with category_id, or images[*].labels")


def read_image_labels(path: str | os.PathLike[str]) -> LabelSet:
    """Read image-level labels from any of the three json kinds.

    Raises:
        DataError: malformed file, unknown category id, or an annotation for an unknown image;
            the message names the file and the entry.
    """
    path = Path(path)
    d = read_json(path)
    if not isinstance(d, dict) or "images" not in d or "categories" not in d:
        raise DataError(f"{path}: expected a COCO-style object with 'images' and 'categories'")
    cats = d["categories"]
    if not isinstance(cats, list) or not cats or not all(
        isinstance(c, dict) and "id" in c and "name" in c for c in cats
    ):
        raise DataError(f"{path}: 'categories' must be a non-empty list of {{id, name}} objects")
    check_unique_categories(cats, str(path))
    try:
        catmap = CategoryMap.from_coco(cats)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: {exc}") from None
    tags: dict[int, set[int]] = {}
    records: dict[int, dict[str, Any]] = {}
    names: dict[str, int] = {}
    if not isinstance(d["images"], list):
        raise DataError(f"{path}: 'images' must be a list")
    for i, im in enumerate(d["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DataError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        iid = json_id(im["id"], f"{path}: images[{i}].id")
        if iid in records:  # one would be dropped and the tags of both merged
            raise DataError(f"{path}: images[{i}]: image id {iid} is listed twice")
        name = str(im["file_name"])
        if name in names:
            raise DataError(f"{path}: images[{i}]: file {name!r} is listed twice (image ids "
                            f"{names[name]} and {iid})")
        names[name] = iid
        records[iid] = im
        tags[iid] = set()
    try:
        kind = detect_kind(d)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None

    def add(iid: Any, cid: Any, where: str) -> None:
        iid, cid = json_id(iid, f"{path}: {where}: image id"), json_id(
            cid, f"{path}: {where}: category id")
        if iid not in tags:
            raise DataError(f"{path}: {where}: image_id {iid} is not in images")
        if cid not in catmap:
            raise DataError(f"{path}: {where} (image {iid}): unknown category id {cid}")
        tags[iid].add(cid)

    if kind == "panoptic":
        annotated: dict[Any, int] = {}
        for i, ann in enumerate(d["annotations"]):
            segs = ann.get("segments_info", []) if isinstance(ann, dict) else None
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if isinstance(image_id, (int, str)) and image_id in annotated:
                raise DataError(f"{path}: annotations[{i}]: image {image_id} has a second "
                                f"annotation (the first is annotations[{annotated[image_id]}])")
            annotated[image_id] = i
            if not isinstance(segs, list):
                raise DataError(f"{path}: annotations[{i}] needs a segments_info list")
            for j, s in enumerate(segs):
                if not isinstance(s, dict):
                    raise DataError(f"{path}: annotations[{i}].segments_info[{j}] is not an "
                                    "object")
                add(ann.get("image_id"), s.get("category_id"),
                    f"annotations[{i}].segments_info[{j}]")
    elif kind == "instances":
        ann_ids: dict[Any, int] = {}
        for i, ann in enumerate(d["annotations"]):
            if not isinstance(ann, dict):
                raise DataError(f"{path}: annotations[{i}] is not an object")
            aid = ann.get("id")
            if isinstance(aid, (int, str)) and aid in ann_ids:
                raise DataError(f"{path}: annotations[{i}]: annotation id {aid} is listed twice "
                                f"(also annotations[{ann_ids[aid]}])")
            ann_ids[aid] = i
            add(ann.get("image_id"), ann.get("category_id"), f"annotations[{i}]")
    else:
        by_name = {str(c["name"]): int(c["id"]) for c in catmap.categories}
        for iid, im in records.items():
            labels = im.get("labels", [])
            where = f"image {iid} ({im['file_name']})"
            if not isinstance(labels, list):
                raise DataError(f"{path}: {where}: 'labels' must be a list of category ids or "
                                f"names, got {labels!r:.60}")
            for label in labels:  # a category id, or its name
                if isinstance(label, str) and not label.strip().lstrip("-").isdigit():
                    if label not in by_name:
                        raise DataError(f"{path}: {where}: unknown category name {label!r} "
                                        f"(categories: {', '.join(sorted(by_name))})")
                    label = by_name[label]
                elif isinstance(label, bool) or not isinstance(label, (int, str)):
                    raise DataError(f"{path}: {where}: label {label!r:.40} is neither a "
                                    "category id nor a name")
                add(iid, label, where)
    images = tuple(
        ImageLabels(iid, str(im["file_name"]), _opt_int(im.get("height")),
                    _opt_int(im.get("width")), tuple(sorted(tags[iid])))
        for iid, im in records.items()
    )
    return LabelSet(path, kind, catmap, images)


def _opt_int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError, OverflowError):
        return None
