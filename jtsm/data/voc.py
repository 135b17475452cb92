"""PASCAL VOC 2012 (+ SBD) -> COCO panoptic: 20 thing classes and one stuff class, background.

Splits (the field's standard, docs/formats.md):
- **train**: VOC2012 ``ImageSets/Segmentation/train.txt``; with SBD, the "train-aug" set: that
  list plus SBD's ``train.txt`` and ``val.txt``, minus VOC2012 val (10,582 images on the real data);
- **val**: VOC2012 ``ImageSets/Segmentation/val.txt`` (1,449 images).

Per image, each object of ``SegmentationObject`` (palette index 1..254) becomes a thing segment
whose class is the majority of ``SegmentationClass`` under it; class 0 pixels form one
``background`` stuff segment; palette index 255 (the boundary colour) is void. Images only in
SBD use its ``inst/*.mat`` (``GTinst.Segmentation``, ``GTinst.Categories``) and
``cls/*.mat``; where both exist, the VOC2012 annotation wins.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.data.coco_panoptic import write_panoptic_dataset
from jtsm.errors import DataError
from jtsm.structures import PanopticSeg

__all__ = ["VOC_CLASSES", "voc_categories", "convert_voc", "voc_image_panoptic"]

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
BACKGROUND_ID = 21


def voc_categories() -> list[dict[str, Any]]:
    """Categories 1..20 (things, VOC order) and 21 ``background`` (stuff)."""
    cats = [{"id": i + 1, "name": n, "isthing": 1, "supercategory": "voc"}
            for i, n in enumerate(VOC_CLASSES)]
    cats.append({"id": BACKGROUND_ID, "name": "background", "isthing": 0,
                 "supercategory": "voc"})
    return cats


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: image list not found")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text image list ({exc.reason})") from None
    names = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        name = ln.split()[0]
        # names become paths under JPEGImages/ and OUT/images/: never let one leave them
        if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
            raise DataError(f"{path}: line {i + 1}: image name {name!r} is not a plain file "
                            "name (no folders, '..' or absolute paths)")
        names.append(name)
    return names


def _read_palette_png(path: Path) -> np.ndarray:
    """Palette indices ``(H, W)`` uint8 of a VOC annotation PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DataError(f"{path}: expected a palette (P) PNG, got mode {im.mode}")
            return np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: annotation PNG not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read annotation PNG ({exc})") from None


def _read_sbd(sbd: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SBD ``(class map, instance map, instance categories)`` of one image."""
    from scipy.io import loadmat

    try:
        cls = loadmat(sbd / "cls" / f"{name}.mat", squeeze_me=True, struct_as_record=False)
        inst = loadmat(sbd / "inst" / f"{name}.mat", squeeze_me=True, struct_as_record=False)
        cls_map = np.asarray(cls["GTcls"].Segmentation, np.uint8)
        inst_map = np.asarray(inst["GTinst"].Segmentation, np.uint8)
        cats = np.atleast_1d(np.asarray(inst["GTinst"].Categories, np.int64))
    except FileNotFoundError as exc:
        raise DataError(f"SBD annotation missing for {name}: {exc.filename}") from None
    except (KeyError, AttributeError, ValueError) as exc:
        raise DataError(f"{sbd}: malformed SBD .mat for {name} ({exc})") from None
    return cls_map, inst_map, cats


def voc_image_panoptic(cls_map: np.ndarray, inst_map: np.ndarray,
                       inst_cats: np.ndarray | None = None) -> PanopticSeg:
    """Panoptic segmentation of one VOC image from its class and object maps.

    Arguments:
        cls_map: ``(H, W)`` class indices, 0 background, 1..20 classes, 255 void.
        inst_map: ``(H, W)`` object indices, 0 none, 1..N objects, 255 void.
        inst_cats: SBD's class per object (``N,``); when ``None``, the majority class under
            each object is used (VOC2012's ``SegmentationClass``).
    """
    ids = np.zeros(cls_map.shape, np.int64)
    segments: list[dict[str, Any]] = []
    void = (cls_map == 255) | (inst_map == 255)
    bg = (cls_map == 0) & ~void
    next_id = 1
    if bg.any():
        ids[bg] = next_id
        segments.append({"id": next_id, "category_id": BACKGROUND_ID, "iscrowd": 0})
        next_id += 1
    for k in np.unique(inst_map):
        if k == 0 or k == 255:
            continue
        m = (inst_map == k) & ~void & ~bg
        if not m.any():
            continue
        if inst_cats is not None:
            if k - 1 >= len(inst_cats):
                raise DataError(f"object {k} has no category in GTinst.Categories")
            c = int(inst_cats[k - 1])
        else:
            vals = cls_map[m]
            vals = vals[(vals >= 1) & (vals <= 20)]
            if vals.size == 0:
                continue
            c = int(np.bincount(vals).argmax())
        if not 1 <= c <= 20:
            continue
        ids[m] = next_id
        segments.append({"id": next_id, "category_id": c, "iscrowd": 0})
        next_id += 1
    return PanopticSeg(ids, segments).with_stats()


def _place_image(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    if not src.is_file():
        raise DataError(f"{src}: image not found")
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def convert_voc(
    voc_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    sbd_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[Iterable[Any], int, str], Iterable[Any]] | None = None,
) -> dict[str, int]:
    """Convert VOC2012 (+ SBD) into ``out/images``, ``out/annotations/panoptic_{train,val}``.

    Returns:
        counts of images per split and how many came from SBD.
    """
    voc = Path(voc_dir)
    if (voc / "VOC2012").is_dir() and not (voc / "JPEGImages").is_dir():
        voc = voc / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets"):
        if not (voc / sub).is_dir():
            raise DataError(f"{voc}: not a VOC2012 folder (missing {sub}/)")
    seg_sets = voc / "ImageSets" / "Segmentation"
    voc_train = _read_list(seg_sets / "train.txt")
    voc_val = _read_list(seg_sets / "val.txt")
    val_set = set(voc_val)
    voc_annotated = set(voc_train) | val_set
    train = list(voc_train)
    sbd = Path(sbd_dir) if sbd_dir is not None else None
    if sbd is not None:
        if not (sbd / "cls").is_dir() or not (sbd / "inst").is_dir():
            raise DataError(f"{sbd}: not an SBD folder (missing cls/ or inst/)")
        seen = set(train)
        for lst in ("train.txt", "val.txt"):
            for name in _read_list(sbd / lst):
                if name not in seen and name not in val_set:
                    train.append(name)
                    seen.add(name)
    train.sort()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {"sbd_images": 0}
    for split_idx, (split, names) in enumerate((("train", train), ("val", sorted(voc_val)))):
        images, segs = [], []
        it: Iterable[str] = names if progress is None else progress(names, len(names),
                                                                    f"voc {split}")
        for i, name in enumerate(it):
            if name in voc_annotated:
                seg = voc_image_panoptic(
                    _read_palette_png(voc / "SegmentationClass" / f"{name}.png"),
                    _read_palette_png(voc / "SegmentationObject" / f"{name}.png"),
                )
            else:
                assert sbd is not None
                cls_map, inst_map, cats = _read_sbd(sbd, name)
                seg = voc_image_panoptic(cls_map, inst_map, cats)
                counts["sbd_images"] += 1
            _place_image(voc / "JPEGImages" / f"{name}.jpg", out / "images" / f"{name}.jpg")
            h, w = seg.image_size
            images.append({"id": split_idx * 10_000_000 + i + 1, "file_name": f"{name}.jpg",
                           "height": h, "width": w})
            segs.append(seg)
        write_panoptic_dataset(out / "annotations" / f"panoptic_{split}.json", images,
                               voc_categories(), segs,
                               extra={"info": {"description": "PASCAL VOC 2012 panoptic"}})
        counts[f"{split}_images"] = len(names)
    return counts
