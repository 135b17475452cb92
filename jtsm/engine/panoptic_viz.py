"""Pictures a person can read at a glance: ``image | prediction | ground truth`` panels.

Each segment is painted over the image in its class's colour (every thing instance in its own
shade of it), outlined, and labelled with its class name (and score, when it has one); each
panel has a title, and a legend strip below lists the classes present with their colours.
Beside every ``<name>.png`` a ``<name>.json`` records the panel titles and, per panel, the
classes present in the legend (what the picture shows, for a script to check).

Drawing is OpenCV's (``cv2.putText``, Hershey fonts): no plotting library needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jtsm.fileio import atomic_write_json, write_png
from jtsm.structures import CategoryMap, PanopticSeg

__all__ = ["class_colour", "colourise", "draw_panel", "instance_colour", "write_panel"]

#: Long side (pixels) each part of a panel is drawn at: small images are enlarged so their
#: labels stay legible, large ones reduced so the panel stays a screen wide.
MIN_SIDE, MAX_SIDE = 384, 768
_FONT = cv2.FONT_HERSHEY_SIMPLEX


#: Twenty well-separated colours (the "tab20" qualitative palette: ten hues, each dark and
#: light); a category id picks one, ids past 20 cycle through them darker.
_PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
], np.float32)


def class_colour(category_id: int) -> np.ndarray:
    """A fixed RGB colour for a category id, float32 ``(3,)``: ids 1..20 (VOC's 21 classes,
    the demo's 9) each their own palette colour, later ids the same colours darker."""
    i = max(int(category_id) - 1, 0)
    return _PALETTE[i % len(_PALETTE)] * (0.8 ** ((i // len(_PALETTE)) % 3))


def instance_colour(category_id: int, k: int) -> np.ndarray:
    """The ``k``-th instance's shade of its class colour: alternately darker and lighter
    (value x1.0, 0.7, 1.25, 0.85, 1.12, 0.6), so touching instances of a class stay apart."""
    shades = (1.0, 0.7, 1.25, 0.85, 1.12, 0.6)
    return np.clip(class_colour(category_id) * shades[k % len(shades)], 0, 255)


def _names(categories: CategoryMap | Sequence[dict[str, Any]] | None) -> dict[int, str]:
    cats = categories.categories if isinstance(categories, CategoryMap) else (categories or [])
    return {int(c["id"]): str(c["name"]) for c in cats}


def _things(categories: CategoryMap | Sequence[dict[str, Any]] | None) -> set[int]:
    cats = categories.categories if isinstance(categories, CategoryMap) else (categories or [])
    return {int(c["id"]) for c in cats if int(c.get("isthing", 1)) == 1}


def _segment_colours(seg: PanopticSeg, things: set[int] | None) -> list[np.ndarray]:
    """One colour per segment: stuff in its class colour, thing instances in their shades."""
    count: dict[int, int] = {}
    out = []
    for s in seg.segments:
        cid = int(s["category_id"])
        if things is not None and cid not in things:
            out.append(class_colour(cid))
            continue
        k = count.get(cid, 0)
        count[cid] = k + 1
        out.append(instance_colour(cid, k))
    return out


def colourise(image: np.ndarray, seg: PanopticSeg, alpha: float = 0.65,
              categories: CategoryMap | Sequence[dict[str, Any]] | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8: ``image`` with the segments of ``seg`` painted over it and outlined
    (void stays the plain image). ``categories`` tells things (shaded per instance) from stuff."""
    out = image.astype(np.float32).copy()
    things = _things(categories) if categories is not None else None
    colours = _segment_colours(seg, things)
    for s, colour in zip(seg.segments, colours):
        m = seg.ids == int(s["id"])
        out[m] = (1 - alpha) * out[m] + alpha * colour
    out = out.astype(np.uint8)
    for s, colour in zip(seg.segments, colours):  # outlines: dark halo, class-colour line
        m = (seg.ids == int(s["id"])).astype(np.uint8)
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 2)
        cv2.drawContours(out, contours, -1, tuple(int(c * 0.6) for c in colour), 1)
    return out


def _label_point(mask: np.ndarray) -> tuple[int, int]:
    """The point of ``mask`` farthest from its border (where a label covers most of it)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float,
          colour: tuple[int, int, int] = (255, 255, 255), centre: bool = False,
          box: tuple[int, int, int] | None = (0, 0, 0), taken: list[tuple[int, ...]] | None = None
          ) -> bool:
    """``text`` at ``org`` (its left baseline, or its centre) on a filled box, kept inside the
    image. With ``taken`` (boxes already drawn), a label that would overlap one is skipped
    (returns ``False``) and a drawn one is added to it."""
    th = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, _FONT, scale, th)
    x, y = org
    if centre:
        x, y = x - w // 2, y + h // 2
    x = int(np.clip(x, 2, max(2, img.shape[1] - w - 2)))
    y = int(np.clip(y, h + 2, max(h + 2, img.shape[0] - base - 2)))
    rect = (x - 2, y - h - 2, x + w + 2, y + base)
    if taken is not None:
        if any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3]
               for r in taken):
            return False
        taken.append(rect)
    if box is not None:
        cv2.rectangle(img, rect[:2], rect[2:], box, -1)
    cv2.putText(img, text, (x, y), _FONT, scale, colour, th, cv2.LINE_AA)
    return True


def _labelled(image: np.ndarray, seg: PanopticSeg, names: dict[int, str],
              categories: CategoryMap | Sequence[dict[str, Any]] | None) -> np.ndarray:
    """The segments painted and outlined, each named (with its score) where its label fits:
    largest segments first, a label that would cover another's is left out (the legend still
    lists its class)."""
    out = colourise(image, seg, categories=categories)
    scale = max(0.4, min(out.shape[:2]) / 700)
    areas = [(int((seg.ids == int(s["id"])).sum()), k) for k, s in enumerate(seg.segments)]
    taken: list[tuple[int, ...]] = []
    for area, k in sorted(areas, reverse=True):
        s = seg.segments[k]
        if area == 0:
            continue
        cid = int(s["category_id"])
        text = names.get(cid, str(cid))
        if "score" in s:
            text += f" {float(s['score']):.2f}"
        _text(out, text, _label_point(seg.ids == int(s["id"])), scale, centre=True,
              box=(30, 30, 30), taken=taken)
    return out


def _present(seg: PanopticSeg) -> list[int]:
    """Category ids of the segments that have pixels, in first-appearance order."""
    ids = set(np.unique(seg.ids).tolist())
    out: list[int] = []
    for s in seg.segments:
        cid = int(s["category_id"])
        if int(s["id"]) in ids and cid not in out:
            out.append(cid)
    return out


def _legend(width: int, cids: Sequence[int], names: dict[int, str], scale: float
            ) -> np.ndarray:
    """A white strip: a colour swatch and the name of each class, wrapped to ``width``."""
    th = max(1, round(scale * 2))
    h = cv2.getTextSize("Ag", _FONT, scale, th)[0][1]
    row_h, pad = h + 14, 8
    items = [(cid, names.get(cid, str(cid))) for cid in cids]
    rows: list[list[tuple[int, str, int]]] = [[]]
    x = pad
    for cid, name in items:
        w = h + 6 + cv2.getTextSize(name, _FONT, scale, th)[0][0] + 18
        if x + w > width and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((cid, name, x))
        x += w
    strip = np.full((max(1, len(rows)) * row_h + pad, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = pad + r * row_h
        for cid, name, x in row:
            colour = tuple(int(c) for c in class_colour(cid))
            cv2.rectangle(strip, (x, y + 2), (x + h + 2, y + h + 4), colour, -1)
            cv2.rectangle(strip, (x, y + 2), (x + h + 2, y + h + 4), (60, 60, 60), 1)
            cv2.putText(strip, name, (x + h + 8, y + h + 3), _FONT, scale, (20, 20, 20), th,
                        cv2.LINE_AA)
    return strip


def _resize(image: np.ndarray, seg: PanopticSeg | None, size: tuple[int, int]
            ) -> tuple[np.ndarray, PanopticSeg | None]:
    h, w = size
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA
                           if h < image.shape[0] else cv2.INTER_LINEAR)
    if seg is not None and seg.image_size != (h, w):
        ids = cv2.resize(seg.ids.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
        seg = PanopticSeg(ids, seg.segments)
    return image, seg


def draw_panel(image: np.ndarray, pred: PanopticSeg, gt: PanopticSeg | None = None,
               categories: CategoryMap | Sequence[dict[str, Any]] | None = None,
               titles: Sequence[str] = ("image", "prediction", "ground truth"),
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """``image | pred | gt`` (the last when given) side by side, titled, with a legend.

    Arguments:
        image: RGB uint8 ``(H, W, 3)``.
        pred, gt: segmentations of the image (any size: drawn at the image's).
        categories: names (and ``isthing``) of the category ids.
        titles: the three panel titles.

    Returns:
        the panel, RGB uint8 ``(H', W', 3)``, and its description: ``{"titles": [...],
        "legend": {title: [class names present]}, "scale": s}`` (``s``: drawn / image size).
    """
    names = _names(categories)
    h, w = image.shape[:2]
    s = min(max(1.0, MIN_SIDE / max(h, w)), MAX_SIDE / max(h, w))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    img, pred_r = _resize(image, pred, size)
    parts = [img, _labelled(img, pred_r, names, categories)]
    legend: dict[str, list[str]] = {titles[1]: [names.get(c, str(c)) for c in _present(pred)]}
    present = _present(pred)
    if gt is not None:
        _, gt_r = _resize(image, gt, size)
        parts.append(_labelled(img, gt_r, names, categories))
        legend[titles[2]] = [names.get(c, str(c)) for c in _present(gt)]
        present += [c for c in _present(gt) if c not in present]
    scale = max(0.45, size[0] / 700)
    title_h = cv2.getTextSize("Ag", _FONT, scale * 1.2, 2)[0][1] + 16
    gap = 6
    row_w = len(parts) * size[1] + (len(parts) - 1) * gap
    row = np.full((title_h + size[0], row_w, 3), 255, np.uint8)
    for i, p in enumerate(parts):
        x = i * (size[1] + gap)
        row[title_h:, x:x + size[1]] = p
        _text(row, titles[i], (x + size[1] // 2, title_h // 2), scale * 1.2, (20, 20, 20),
              centre=True, box=None)
    strip = _legend(row_w, present, names, scale)
    panel = np.concatenate([row, strip], 0)
    info = {"titles": list(titles[:len(parts)]), "legend": legend, "scale": s}
    return panel, info


def write_panel(path: str | os.PathLike[str], image: np.ndarray, pred: PanopticSeg,
                gt: PanopticSeg | None = None,
                categories: CategoryMap | Sequence[dict[str, Any]] | None = None,
                titles: Sequence[str] = ("image", "prediction", "ground truth")) -> None:
    """Write :func:`draw_panel` as ``path`` (PNG) and its description beside it (``.json``)."""
    panel, info = draw_panel(image, pred, gt, categories, titles)
    path = Path(path)
    write_png(path, panel)
    atomic_write_json(path.with_suffix(".json"), info, indent=1)
