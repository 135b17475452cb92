"""Fixtures: builds a small VOC2012 + SBD folder (palette PNGs, XML, ImageSets, .mat) for tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.io import savemat


def _palette() -> list[int]:
    pal = []
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _save_palette_png(path: Path, arr: np.ndarray) -> None:
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette(_palette())
    im.save(path)


def _scene(rng: np.random.Generator, h: int = 40, w: int = 50):
    """(class map, object map, object classes) with two objects, boundaries = 255."""
    cls = np.zeros((h, w), np.uint8)
    obj = np.zeros((h, w), np.uint8)
    classes = [int(rng.integers(1, 21)), int(rng.integers(1, 21))]
    cls[5:20, 5:25] = classes[0]
    obj[5:20, 5:25] = 1
    cls[22:35, 28:45] = classes[1]
    obj[22:35, 28:45] = 2
    edge = cv2.morphologyEx((obj > 0).astype(np.uint8), cv2.MORPH_GRADIENT,
                            np.ones((3, 3), np.uint8)).astype(bool)
    cls[edge] = 255
    obj[edge] = 255
    return cls, obj, classes


def make_voc(root: Path, train=("2007_000001", "2007_000002"), val=("2007_000003",),
             sbd_only=("2008_000010", "2008_000011")) -> tuple[Path, Path, dict]:
    """Write VOC2012-layout and SBD-layout folders; returns (voc, sbd, truth by name)."""
    voc = root / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations",
                "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    sbd = root / "SBD"
    (sbd / "cls").mkdir(parents=True, exist_ok=True)
    (sbd / "inst").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    truth = {}
    for name in list(train) + list(val) + list(sbd_only):
        cls, obj, classes = _scene(rng)
        truth[name] = (cls, obj, classes)
        img = rng.integers(0, 255, cls.shape + (3,), dtype=np.uint8)
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), img)
        (voc / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename></annotation>")
        if name not in sbd_only:
            _save_palette_png(voc / "SegmentationClass" / f"{name}.png", cls)
            _save_palette_png(voc / "SegmentationObject" / f"{name}.png", obj)
        # SBD has no void boundaries; it covers train and some val images
        cls_s = np.where(cls == 255, 0, cls)
        obj_s = np.where(obj == 255, 0, obj)
        savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": cls_s}})
        savemat(sbd / "inst" / f"{name}.mat", {"GTinst": {
            "Segmentation": obj_s, "Categories": np.array(classes, np.uint8).reshape(-1, 1)}})
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    # SBD's lists overlap VOC val: those must not enter train-aug
    (sbd / "train.txt").write_text("\n".join([sbd_only[0], train[0]]) + "\n")
    (sbd / "val.txt").write_text("\n".join([sbd_only[1], val[0]]) + "\n")
    return voc, sbd, truth


import pytest  # noqa: E402


@pytest.fixture
def voc_src(tmp_path):
    """(voc folder, sbd folder, truth) of a generated VOC2012 + SBD layout."""
    return make_voc(tmp_path / "src")
