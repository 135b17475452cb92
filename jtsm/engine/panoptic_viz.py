"""Pictures a person can read at a glance: ``image | prediction | ground truth`` panels.

Each segment is painted over the image in its class's colour (every thing instance in its own
shade of it), outlined, and labelled with its class name (and score, when it has one); each
panel has a title, and a legend strip below lists the classes present with their colours.
Segments scored below ``min_score`` are left undrawn (the legend says how many); segments
without a score, and columns of labels (ground truth, pseudo labels), are always drawn.
Text (labels, titles, legend) is sized to the picture (:func:`text_style`), so a small and a
large image give labels of the same share of the picture. Beside every ``<name>.png`` a
``<name>.json`` records the panel titles, per panel the classes present in the legend, the
score threshold and how many segments it hid (what the picture shows, for a script to check).

Drawing is OpenCV's (``cv2.putText``, Hershey fonts): no plotting library needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jtsm.errors import DataError, JtsmError
from jtsm.fileio import atomic_write_json, write_png
from jtsm.structures import CategoryMap, PanopticSeg

__all__ = ["MIN_SCORE", "check_min_score", "class_colour", "colourise", "draw_panel",
           "hide_below", "instance_colour", "text_style", "write_panel"]

#: Long side (pixels) each part of a panel is drawn at: small images are enlarged so their
#: labels stay legible, large ones reduced so the panel stays a screen wide.
MIN_SIDE, MAX_SIDE = 384, 768
_FONT = cv2.FONT_HERSHEY_SIMPLEX

#: Segments scored below this are not drawn by default: it hides the near-zero segments a
#: model leaves for classes it barely believes in (they crowd a picture with noise) and keeps
#: every segment the model gives a fair chance, the uncertain ones a reader wants to judge.
MIN_SCORE = 0.3

#: Label text height (``cv2.getTextSize`` of "Ag") as a share of the picture's short side,
#: and the fewest pixels it may have (below about 10 px Hershey letters blur together).
TEXT_SHARE, MIN_TEXT_PX = 0.04, 10
#: Titles are this much larger than labels.
TITLE_GROWTH = 1.25
_TEXT_PX_AT_1 = cv2.getTextSize("Ag", _FONT, 1.0, 1)[0][1]  # text height at font scale 1


def check_min_score(value: float, name: str = "min_score") -> float:
    """``value`` as a float if it is a finite number in [0, 1]; else a one-line
    :class:`JtsmError` naming ``name`` (an option or argument) and the value."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise JtsmError(f"{name} {value!r}: expected a number in [0, 1]") from None
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise JtsmError(f"{name} {value!r}: must be a finite number in [0, 1] (a segment score)")
    return v


def text_style(height: int, width: int) -> tuple[float, int]:
    """Font scale and stroke thickness for labels on a ``(height, width)`` picture: the text
    is :data:`TEXT_SHARE` of the short side tall (at least :data:`MIN_TEXT_PX` pixels), so
    labels keep the same share of a small and a large picture and never cover it."""
    px = max(MIN_TEXT_PX, TEXT_SHARE * min(height, width))
    scale = px / _TEXT_PX_AT_1
    return scale, max(1, round(scale * 2))


def _score(s: dict[str, Any]) -> float | None:
    """A segment's ``score`` as a float, ``None`` when it has none; a score that is not a
    finite number is a :class:`DataError` naming the segment."""
    if "score" not in s or s["score"] is None:
        return None
    try:
        v = float(s["score"])
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise DataError(f"segment {s.get('id')}: score {s['score']!r} is not a number")
    return v


def hide_below(seg: PanopticSeg, min_score: float) -> tuple[PanopticSeg, int]:
    """``seg`` without its segments scored below ``min_score`` (their pixels become void, so
    the plain image shows), and how many of them had pixels. Segments without a score stay."""
    low = [s for s in seg.segments if (v := _score(s)) is not None and v < min_score]
    if not low:
        return seg, 0
    low_ids = np.array([int(s["id"]) for s in low], np.int64)
    hit = np.isin(seg.ids, low_ids)
    shown = int(np.isin(low_ids, seg.ids[hit]).sum()) if hit.any() else 0
    low_set = {int(i) for i in low_ids}
    return (PanopticSeg(np.where(hit, 0, seg.ids),
                        [s for s in seg.segments if int(s["id"]) not in low_set]), shown)


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


def _text(img: np.ndarray, text: str, org: tuple[int, int], style: tuple[float, int],
          colour: tuple[int, int, int] = (255, 255, 255), centre: bool = False,
          box: tuple[int, int, int] | None = (0, 0, 0), taken: list[tuple[int, ...]] | None = None
          ) -> bool:
    """``text`` at ``org`` (its left baseline, or its centre) in ``style`` (font scale,
    thickness) on a filled box, kept inside the image. With ``taken`` (boxes already drawn),
    a label that would overlap one is skipped (returns ``False``) and a drawn one is added."""
    scale, th = style
    w = cv2.getTextSize(text, _FONT, scale, th)[0][0]
    # the height and depth of "Ag", not of ``text``: every box the same height, descenders in
    (_, h), base = cv2.getTextSize("Ag", _FONT, scale, th)
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
    lists its class). Text in :func:`text_style` of the picture."""
    out = colourise(image, seg, categories=categories)
    style = text_style(*out.shape[:2])
    areas = [(int((seg.ids == int(s["id"])).sum()), k) for k, s in enumerate(seg.segments)]
    taken: list[tuple[int, ...]] = []
    for area, k in sorted(areas, reverse=True):
        s = seg.segments[k]
        if area == 0:
            continue
        cid = int(s["category_id"])
        text = names.get(cid, str(cid))
        score = _score(s)
        if score is not None:
            text += f" {score:.2f}"
        _text(out, text, _label_point(seg.ids == int(s["id"])), style, centre=True,
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


def _legend(width: int, cids: Sequence[int], names: dict[int, str], style: tuple[float, int],
            notes: Sequence[str] = ()) -> np.ndarray:
    """A white strip: a colour swatch and the name of each class, then ``notes`` (grey text,
    no swatch), wrapped to ``width``."""
    scale, th = style
    h = cv2.getTextSize("Ag", _FONT, scale, th)[0][1]
    pad = max(6, h // 2)
    row_h = h + pad + 6
    sw = h + 2 + max(6, h // 3)  # a swatch and the space after it
    items = [(cid, names.get(cid, str(cid))) for cid in cids] + [(None, n) for n in notes]
    rows: list[list[tuple[int | None, str, int]]] = [[]]
    x = pad
    for cid, name in items:
        w = (sw if cid is not None else 0) + cv2.getTextSize(name, _FONT, scale, th)[0][0] \
            + 2 * pad
        if x + w > width and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((cid, name, x))
        x += w
    strip = np.full((max(1, len(rows)) * row_h + pad, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = pad + r * row_h
        for cid, name, x in row:
            if cid is None:
                cv2.putText(strip, name, (x, y + h + 3), _FONT, scale, (90, 90, 90), th,
                            cv2.LINE_AA)
                continue
            colour = tuple(int(c) for c in class_colour(cid))
            cv2.rectangle(strip, (x, y + 2), (x + h + 2, y + h + 4), colour, -1)
            cv2.rectangle(strip, (x, y + 2), (x + h + 2, y + h + 4), (60, 60, 60), 1)
            cv2.putText(strip, name, (x + sw, y + h + 3), _FONT, scale, (20, 20, 20), th,
                        cv2.LINE_AA)
    return strip


def _resize_seg(seg: PanopticSeg, size: tuple[int, int]) -> PanopticSeg:
    """``seg`` at ``size`` ``(h, w)`` (nearest neighbour: ids stay ids)."""
    h, w = size
    if seg.image_size == (h, w):
        return seg
    ids = cv2.resize(seg.ids.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    return PanopticSeg(ids, seg.segments)


def _hidden_note(n: int, min_score: float, title: str | None) -> str:
    """``"3 segments below score 0.30 hidden"`` (prefixed ``"title: "`` when given)."""
    text = f"{n} segment{'s' if n != 1 else ''} below score {min_score:.2f} hidden"
    return f"{title}: {text}" if title else text


def draw_panel(image: np.ndarray, pred: PanopticSeg, gt: PanopticSeg | None = None,
               categories: CategoryMap | Sequence[dict[str, Any]] | None = None,
               titles: Sequence[str] = ("image", "prediction", "ground truth"),
               min_score: float = MIN_SCORE, labels: Sequence[bool] = (False, False),
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """``image | pred | gt`` (the last when given) side by side, titled, with a legend.

    Arguments:
        image: RGB uint8 ``(H, W, 3)``.
        pred, gt: segmentations of the image (any size: drawn at the image's).
        categories: names (and ``isthing``) of the category ids.
        titles: the three panel titles.
        min_score: segments of ``pred`` and ``gt`` scored below it are not drawn (a finite
            number in [0, 1]; 0 draws all); segments without a score always are.
        labels: whether ``pred``, ``gt`` are labels (ground truth, pseudo labels): drawn
            whole, a score they carry (a pseudo label's training weight) shown, never used
            to hide them.

    Returns:
        the panel, RGB uint8 ``(H', W', 3)``, and its description: ``{"titles": [...],
        "legend": {title: [class names drawn]}, "scale": s, "min_score": t, "hidden":
        {title: segments hidden}, "notes": [the legend's lines on them], "boxes": [[x0, y0,
        x1, y1] of each picture in the panel]}`` (``s``: drawn / image size; ``hidden`` has the
        columns that are not labels; a title used twice is keyed ``"title (3)"`` the second
        time, 3 being its column).

    Raises:
        JtsmError: ``min_score`` out of [0, 1]; DataError: a score that is not a number.
    """
    min_score = check_min_score(min_score)
    names = _names(categories)
    h, w = image.shape[:2]
    s = min(max(1.0, MIN_SIDE / max(h, w)), MAX_SIDE / max(h, w))
    size = (max(1, round(h * s)), max(1, round(w * s)))
    img = image
    if image.shape[:2] != size:
        img = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA
                         if size[0] < h else cv2.INTER_LINEAR)
    parts = [img]
    legend: dict[str, list[str]] = {}
    hidden: dict[str, int] = {}
    present: list[int] = []
    segs = [pred] if gt is None else [pred, gt]
    keys: list[str] = []  # the columns' titles, a repeated one numbered: "ground truth (3)"
    for t in titles[1:len(segs) + 1]:
        keys.append(t if t not in keys else f"{t} ({len(keys) + 2})")
    for k, seg in enumerate(segs):
        title = keys[k]
        if not labels[k]:
            seg, hidden[title] = hide_below(seg, min_score)
        parts.append(_labelled(img, _resize_seg(seg, size), names, categories))
        cids = _present(seg)
        legend[title] = [names.get(c, str(c)) for c in cids]
        present += [c for c in cids if c not in present]
    style = text_style(*size)
    t_style = (style[0] * TITLE_GROWTH, max(1, round(style[0] * TITLE_GROWTH * 2)))
    (_, t_h), t_base = cv2.getTextSize("Ag", _FONT, *t_style)
    t_pad = max(6, t_h // 2)
    title_h = t_h + t_base + 2 * t_pad
    # every column as wide as its picture, or as its title when that is wider (a tall thin
    # image): titles never run into each other
    widest = max(cv2.getTextSize(t, _FONT, *t_style)[0][0] for t in titles[:len(parts)])
    col_w = max(size[1], widest + 2 * t_pad)
    gap = 6
    row_w = len(parts) * col_w + (len(parts) - 1) * gap
    row = np.full((title_h + size[0], row_w, 3), 255, np.uint8)
    boxes = []
    for i, p in enumerate(parts):
        x = i * (col_w + gap)
        x_img = x + (col_w - size[1]) // 2
        row[title_h:, x_img:x_img + size[1]] = p
        boxes.append([x_img, title_h, x_img + size[1], title_h + size[0]])
        _text(row, titles[i], (x + col_w // 2, title_h // 2), t_style, (20, 20, 20),
              centre=True, box=None)
    several = gt is not None  # two columns of segments: say which one hid them
    notes = [_hidden_note(n, min_score, t if several else None) for t, n in hidden.items() if n]
    strip = _legend(row_w, present, names, style, notes)
    panel = np.concatenate([row, strip], 0)
    info = {"titles": list(titles[:len(parts)]), "legend": legend, "scale": s,
            "min_score": min_score, "hidden": hidden, "notes": notes, "boxes": boxes}
    return panel, info


def write_panel(path: str | os.PathLike[str], image: np.ndarray, pred: PanopticSeg,
                gt: PanopticSeg | None = None,
                categories: CategoryMap | Sequence[dict[str, Any]] | None = None,
                titles: Sequence[str] = ("image", "prediction", "ground truth"),
                min_score: float = MIN_SCORE, labels: Sequence[bool] = (False, False)
                ) -> dict[str, Any]:
    """Write :func:`draw_panel` as ``path`` (PNG) and its description beside it (``.json``);
    returns the description."""
    panel, info = draw_panel(image, pred, gt, categories, titles, min_score, labels)
    path = Path(path)
    write_png(path, panel)
    atomic_write_json(path.with_suffix(".json"), info, indent=1)
    return info
