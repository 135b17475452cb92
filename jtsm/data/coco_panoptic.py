"""COCO panoptic format: a json (images, annotations with ``segments_info``, categories) plus a
folder of PNGs whose pixels encode segment ids as ``id = R + 256 G + 256^2 B`` (0 = void).

The PNG folder defaults to the json's stem beside it (``annotations/panoptic_val.json`` ->
``annotations/panoptic_val/``), as in COCO. An annotation's ``file_name`` is its PNG's path in
that folder and may hold subfolders (``a/img.png``); readers follow it and refuse names that
leave the folder (``..``, absolute, links). Writers name PNGs by
:func:`jtsm.data.output_names.output_name`. Readers validate what they read and raise
:class:`jtsm.errors.DataError` naming the file and the fault.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jtsm.data.json_ids import check_unique_categories, json_id
from jtsm.data.output_names import output_name
from jtsm.errors import DataError
from jtsm.fileio import atomic_write_bytes, atomic_write_json, check_png, read_json, safe_join
from jtsm.structures import CategoryMap, PanopticSeg

try:  # libspng: the fast PNG decoder (a dependency; OpenCV's libpng is the fallback)
    import pyspng as _pyspng
except ImportError:  # pragma: no cover - the tests cover the fallback by monkeypatching
    _pyspng = None

__all__ = [
    "PanopticDataset",
    "PanopticWriter",
    "id2rgb",
    "load_panoptic_json",
    "png_dir_for",
    "read_panoptic_png",
    "read_panoptic_rgb",
    "rgb2id",
    "write_panoptic_dataset",
    "write_panoptic_png",
]


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` int64 ids, ``R + 256 G + 256^2 B``."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected (H, W, 3) RGB, got shape {rgb.shape}")
    c = rgb[..., :3].astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """``(H, W)`` ids in ``[0, 2^24)`` -> ``(H, W, 3)`` uint8 RGB."""
    ids = np.asarray(ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError("segment ids must lie in [0, 2^24)")
    out = np.empty(ids.shape + (3,), np.uint8)
    out[..., 0] = ids % 256
    out[..., 1] = (ids // 256) % 256
    out[..., 2] = ids // 65536
    return out


def read_panoptic_png(path: str | os.PathLike[str], dtype: type = np.int64) -> np.ndarray:
    """Decode a panoptic PNG to an ``(H, W)`` id map (``dtype`` int64, or uint32 for speed).

    The bytes come from :func:`read_panoptic_rgb`; one colour conversion gives RGBA bytes, and a
    little-endian ``uint32`` view of them is ``R + 256 G + 256^2 B + 256^3 A``; masking A leaves
    the id.
    """
    rgb = read_panoptic_rgb(path)
    if sys.byteorder == "little":
        packed = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA).view(np.uint32)[..., 0]
        packed &= (1 << 24) - 1
        return packed if dtype == np.uint32 else packed.astype(dtype)
    c = rgb.astype(np.int64)  # pragma: no cover - big-endian hosts
    return (c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]).astype(dtype)


def read_panoptic_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """A panoptic PNG's pixels as ``(H, W, 3)`` uint8 R, G, B (``id = R + 256 G + 256^2 B``).

    8-bit RGB, RGBA and palette PNGs are decoded by libspng (``pyspng``, ~3x faster than
    OpenCV's libpng here) when it is installed; other PNGs, or any file libspng refuses, go
    through OpenCV. Alpha is dropped; a grey PNG holds ids < 256 in R. Errors name the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"{path}: panoptic PNG not found") from None
    if not data:
        raise DataError(f"{path}: cannot decode panoptic PNG (empty file)")
    check_png(data, path)  # a truncated file is named here, not by libpng on stderr
    if _pyspng is not None and _spng_can_decode(data):
        try:
            return _pyspng.load(data, "RGB")
        except RuntimeError:  # let OpenCV decide (and word the error)
            pass
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: cannot decode panoptic PNG")
    if img.dtype != np.uint8:
        raise DataError(f"{path}: panoptic PNG must be 8-bit RGB, got {img.dtype}")
    if img.ndim == 2:  # a single-channel PNG holds ids < 256 in R only
        rgb = np.zeros(img.shape + (3,), np.uint8)
        rgb[..., 0] = img
        return rgb
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


#: Largest image libspng is asked to decode (OpenCV's default limit, CV_IO_MAX_IMAGE_PIXELS).
_SPNG_MAX_PIXELS = 1 << 30


def _spng_can_decode(data: bytes) -> bool:
    """An 8-bit RGB(A) or a palette PNG of sane size, read from its IHDR chunk."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, color = data[24], data[25]
    return ((color in (2, 6) and depth == 8) or color == 3) and 0 < width * height <= (
        _SPNG_MAX_PIXELS
    )


def write_panoptic_png(path: str | os.PathLike[str], ids: np.ndarray) -> None:
    """Encode an id map as an RGB PNG, atomically."""
    rgb = id2rgb(ids)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())


def png_dir_for(json_path: str | os.PathLike[str]) -> Path:
    """The PNG folder COCO keeps beside a panoptic json: same folder, the json's stem."""
    p = Path(json_path)
    return p.with_suffix("")


def _require(obj: dict[str, Any], keys: Iterable[str], where: str) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")


@dataclass
class PanopticDataset:
    """A loaded COCO panoptic json with its PNG folder.

    Attributes:
        json_path: the json file.
        png_dir: folder of the panoptic PNGs.
        images: COCO image records (``id``, ``file_name``, ``height``, ``width``).
        annotations: image id -> annotation (``file_name`` of the PNG, ``segments_info``).
        categories: the categories, things first.
    """

    json_path: Path
    png_dir: Path
    images: list[dict[str, Any]]
    annotations: dict[int, dict[str, Any]]
    categories: CategoryMap
    raw: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)

    def image(self, image_id: int) -> dict[str, Any]:
        for im in self.images:
            if int(im["id"]) == int(image_id):
                return im
        raise DataError(f"{self.json_path}: no image with id {image_id}")

    def png_path(self, image_id: int) -> Path:
        ann = self.annotations.get(int(image_id))
        if ann is None:
            raise DataError(f"{self.json_path}: no annotation for image id {image_id}")
        return safe_join(self.png_dir, ann["file_name"])

    def read(self, image_id: int, check: bool = True, complete: bool = False) -> PanopticSeg:
        """The image's panoptic segmentation, its PNG checked against its ``segments_info``.

        With ``check``, a PNG id missing from ``segments_info`` or a PNG of another size than
        the image record is a :class:`DataError`; with ``complete`` too, a listed segment that
        has no pixel in the PNG (predictions and pseudo labels, as panopticapi requires).
        """
        ann = self.annotations.get(int(image_id))
        if ann is None:
            raise DataError(f"{self.json_path}: no annotation for image id {image_id}")
        path = self.png_path(image_id)
        ids = read_panoptic_png(path)
        segs = [dict(s) for s in ann["segments_info"]]
        if check:
            im = self.image(image_id)
            if "height" in im and "width" in im and ids.shape != (im["height"], im["width"]):
                raise DataError(
                    f"{path}: PNG is {ids.shape[1]}x{ids.shape[0]}, image record says "
                    f"{im['width']}x{im['height']}"
                )
            known = {int(s["id"]) for s in segs}
            present = set(np.unique(ids).tolist()) - {0}
            extra = present - known
            if extra:
                raise DataError(
                    f"{path}: PNG has segment id(s) {sorted(extra)[:5]} absent from segments_info"
                )
            absent = known - present
            if complete and absent:
                raise DataError(f"{path}: segments_info lists id(s) {sorted(absent)[:5]} "
                                "absent from the PNG")
        return PanopticSeg(ids, segs)

    def labels(self, image_id: int) -> list[int]:
        """Sorted category ids present in the image (non-crowd segments)."""
        ann = self.annotations.get(int(image_id), {"segments_info": []})
        return sorted({int(s["category_id"]) for s in ann["segments_info"]})


def load_panoptic_json(
    json_path: str | os.PathLike[str], png_dir: str | os.PathLike[str] | None = None
) -> PanopticDataset:
    """Load and validate a COCO panoptic json (PNG folder: ``png_dir`` or beside the json)."""
    json_path = Path(json_path)
    d = read_json(json_path)
    if not isinstance(d, dict):
        raise DataError(f"{json_path}: expected a JSON object with images/annotations/categories")
    _require(d, ["images", "annotations", "categories"], str(json_path))
    categories = _parse_categories(d["categories"], json_path)
    for key in ("images", "annotations"):
        if not isinstance(d[key], list):
            raise DataError(f"{json_path}: '{key}' must be a list")
    images = []
    seen_ids: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    for i, im in enumerate(d["images"]):
        where = f"{json_path}: images[{i}]"
        if not isinstance(im, dict):
            raise DataError(f"{where} is not an object")
        _require(im, ["id", "file_name"], where)
        iid = json_id(im["id"], f"{where}.id")
        if not isinstance(im["file_name"], str):
            raise DataError(f"{where}.file_name must be a string, got {im['file_name']!r:.60}")
        if iid in seen_ids:
            raise DataError(f"{where}: image id {iid} is listed twice (also "
                            f"images[{seen_ids[iid]}])")
        if im["file_name"] in seen_names:
            raise DataError(f"{where}: file {im['file_name']!r} is listed twice (also "
                            f"images[{seen_names[im['file_name']]}])")
        seen_ids[iid] = seen_names[im["file_name"]] = i
        images.append(im)
    anns: dict[int, dict[str, Any]] = {}
    image_ids = {int(im["id"]) for im in images}
    for i, ann in enumerate(d["annotations"]):
        where = f"{json_path}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(f"{where} is not an object")
        _require(ann, ["image_id", "file_name", "segments_info"], where)
        image_id = json_id(ann["image_id"], f"{where}.image_id")
        if image_id not in image_ids:
            raise DataError(f"{where}: image_id {ann['image_id']} is not in images")
        if image_id in anns:
            raise DataError(f"{where}: image {image_id} has a second annotation")
        if not isinstance(ann["file_name"], str):
            raise DataError(f"{where}.file_name must be a string, got {ann['file_name']!r:.60}")
        if not isinstance(ann["segments_info"], list):
            raise DataError(f"{where}.segments_info must be a list")
        seen: set[int] = set()
        for j, s in enumerate(ann["segments_info"]):
            sw = f"{where}.segments_info[{j}]"
            if not isinstance(s, dict):
                raise DataError(f"{sw} is not an object")
            _require(s, ["id", "category_id"], sw)
            sid = json_id(s["id"], f"{sw}.id")
            if not 0 < sid < 1 << 24:
                raise DataError(f"{sw}: segment id {sid} is not in [1, 2^24)")
            if sid in seen:
                raise DataError(f"{sw}: duplicate segment id {sid}")
            seen.add(sid)
            cid = json_id(s["category_id"], f"{sw}.category_id")
            if cid not in categories:
                raise DataError(
                    f"{where} (image {ann['image_id']}): unknown category id {s['category_id']}"
                )
        anns[image_id] = ann
    pdir = Path(png_dir) if png_dir is not None else png_dir_for(json_path)
    return PanopticDataset(json_path, pdir, images, anns, categories, d)


def _parse_categories(cats: Any, where: Path) -> CategoryMap:
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{where}: 'categories' must be a non-empty list")
    check_unique_categories(cats, str(where))
    for i, c in enumerate(cats):
        if not isinstance(c, dict):
            raise DataError(f"{where}: categories[{i}] is not an object")
        _require(c, ["id", "name"], f"{where}: categories[{i}]")
        json_id(c["id"], f"{where}: categories[{i}].id")
        if c.get("isthing", 1) not in (0, 1):  # True/False compare equal to 1/0
            raise DataError(f"{where}: categories[{i}].isthing must be 0 or 1, "
                            f"got {c['isthing']!r:.40}")
    try:
        return CategoryMap.from_coco(cats)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: {exc}") from None


class PanopticWriter:
    """Write a COCO panoptic dataset one image at a time, in constant memory.

    Each PNG is written (atomically) when its image is added; only the small annotation records
    stay in memory. The json, written by :meth:`close`, is the commit point: opening the writer
    removes an existing one, so a run killed half-way never leaves a json next to PNGs it does
    not describe (a rerun writes both again).

    Arguments:
        json_path: the dataset json; its PNG folder is ``png_dir`` or the json's stem.
        categories: COCO category records.
        extra: more top-level keys of the json (``info``, ...).
    """

    def __init__(self, json_path: str | os.PathLike[str], categories: Sequence[dict[str, Any]],
                 png_dir: str | os.PathLike[str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.json_path = Path(json_path)
        self.png_dir = Path(png_dir) if png_dir is not None else png_dir_for(self.json_path)
        self.json_path.unlink(missing_ok=True)
        self.png_dir.mkdir(parents=True, exist_ok=True)
        self.categories = list(categories)
        self.extra = dict(extra or {})
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._names: dict[str, str] = {}  # PNG name -> the image's file name

    def add(self, image: dict[str, Any], seg: PanopticSeg) -> dict[str, Any]:
        """Write the PNG of ``image``, named by :func:`jtsm.data.output_names.output_name`
        from its ``file_name`` (``a/img.jpg`` -> ``a/img.png``, ``x.png`` -> ``x.png.png``);
        segment ``area``/``bbox`` are recomputed. Returns the annotation record, whose
        ``file_name`` is the PNG's path in the PNG folder.

        Raises:
            DataError: another image of this writer has the same PNG (naming both).
        """
        name = output_name(str(image["file_name"]))
        other = self._names.setdefault(name, str(image["file_name"]))
        if other != str(image["file_name"]):
            raise DataError(f"{self.json_path}: images {other!r} and {image['file_name']!r} "
                            f"would both write the PNG {name!r}; rename one of them")
        seg = seg.with_stats()
        write_panoptic_png(self.png_dir / name, seg.ids)
        ann = {"image_id": image["id"], "file_name": name, "segments_info": seg.segments}
        self.images.append(dict(image))
        self.annotations.append(ann)
        return ann

    @property
    def num_segments(self) -> int:
        return sum(len(a["segments_info"]) for a in self.annotations)

    def close(self) -> None:
        """Write the json (atomically)."""
        write_panoptic_json(self.json_path, self.images, self.annotations, self.categories,
                            self.extra)


def write_panoptic_json(json_path: str | os.PathLike[str], images: Sequence[dict[str, Any]],
                        annotations: Sequence[dict[str, Any]],
                        categories: Sequence[dict[str, Any]],
                        extra: dict[str, Any] | None = None) -> None:
    """A COCO panoptic json (atomically): ``images``, ``annotations`` (``annotations[i]``
    belongs to ``images[i]``, its PNG already written), ``categories``, then ``extra``."""
    atomic_write_json(json_path, {"images": list(images), "annotations": list(annotations),
                                  "categories": list(categories), **(extra or {})})


def write_panoptic_dataset(
    json_path: str | os.PathLike[str],
    images: Sequence[dict[str, Any]],
    categories: Sequence[dict[str, Any]],
    segmentations: Sequence[PanopticSeg],
    png_dir: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write PNGs (named after each image, see :meth:`PanopticWriter.add`) and then the json,
    each atomically.

    ``segmentations[i]`` belongs to ``images[i]``. Segment ``area``/``bbox`` are recomputed.
    An existing json is removed first (see :class:`PanopticWriter`).
    """
    if len(images) != len(segmentations):
        raise ValueError(f"{len(images)} images but {len(segmentations)} segmentations")
    writer = PanopticWriter(json_path, categories, png_dir, extra)
    for im, seg in zip(images, segmentations):
        writer.add(im, seg)
    writer.close()
