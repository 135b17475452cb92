"""A generated things-and-stuff dataset in COCO panoptic format: the embedded default.

Each image is a layout of amorphous, textured **stuff** regions with irregular borders
(2-3 classes per image, one segment per class as in COCO panoptic) and countable **things**
(1-3 classes, 1-3 instances each) painted over them with partial occlusion.

What makes it learnable from tags alone yet not trivial:
- thing classes differ by **shape** (disc, square, triangle, star, ring). As in real data (grass
  is usually green), each class leans to a hue, but only loosely: an instance takes a hue near
  its class's with probability ``thing_colour_bias`` and any hue otherwise, and neighbouring
  classes' hue ranges overlap, so colour alone names under half of the thing segments;
- stuff classes differ by **texture** (stripes, dots, grain, waves); their colour ranges overlap;
- scale, rotation, position, shading, blur and sensor noise vary per instance and image.

Visible parts smaller than ``min_visible`` pixels are marked void (id 0). Every image is drawn
from its own RNG seeded by ``(seed, split, index)``, so output is deterministic per seed and
independent of how many images are made.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from jtsm.data.coco_panoptic import write_panoptic_dataset
from jtsm.fileio import atomic_write_bytes
from jtsm.structures import PanopticSeg

if TYPE_CHECKING:
    from jtsm.data.synth_photo import PhotoConfig

__all__ = ["SynthConfig", "THING_CLASSES", "STUFF_CLASSES", "THING_SHAPES", "STUFF_TEXTURES",
           "categories", "render_image", "write_synth_dataset"]

#: Every shape and texture the generator can draw; a dataset picks its classes from these.
THING_SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "star", "ring",
                                 "cross", "hexagon", "crescent", "bar", "halfdisc")
STUFF_TEXTURES: tuple[str, ...] = ("stripes", "dots", "grain", "waves",
                                   "checker", "blotches", "hatch", "rings")
#: The default dataset's classes (the demo's).
THING_CLASSES: tuple[str, ...] = THING_SHAPES[:5]
STUFF_CLASSES: tuple[str, ...] = STUFF_TEXTURES[:4]
#: Stuff colour tendencies (RGB means), per texture; the per-image jitter is wide enough that
#: they overlap.
_STUFF_BASE = np.array([[120, 150, 90], [150, 120, 100], [110, 120, 150], [140, 140, 110],
                        [130, 110, 140], [100, 140, 130], [150, 140, 90], [120, 130, 120]],
                       np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """Generator settings.

    Arguments:
        height, width: image size in pixels.
        min_visible: visible thing parts smaller than this many pixels become void.
        max_things: at most this many thing instances per image.
        thing_colour_bias: probability that a thing takes a hue near its class's.
        things, stuff: the classes, names from :data:`THING_SHAPES` / :data:`STUFF_TEXTURES`
            (at least 1 thing and 2 stuff classes). Other choices than the default give
            datasets a model was not tuned on.
        object_scale: thing radii are ``uniform(0.08, 0.2) * object_scale`` of the short side.
    """

    height: int = 128
    width: int = 128
    min_visible: int = 40
    max_things: int = 6
    thing_colour_bias: float = 0.5
    things: tuple[str, ...] = THING_CLASSES
    stuff: tuple[str, ...] = STUFF_CLASSES
    object_scale: float = 1.0

    def __post_init__(self) -> None:
        check_classes(self.things, THING_SHAPES, self.stuff, STUFF_TEXTURES, self.object_scale)


def check_classes(things: tuple[str, ...], thing_pool: tuple[str, ...], stuff: tuple[str, ...],
                  stuff_pool: tuple[str, ...], object_scale: float, style: str = "") -> None:
    """A style's chosen classes: names of its pools, distinct, at least 1 thing and 2 stuff;
    ``object_scale`` in [0.1, 3].

    Raises:
        ValueError: naming the first bad name or value (``style``: " of the photo style").
    """
    for names, pool, what, least in ((things, thing_pool, "thing", 1),
                                     (stuff, stuff_pool, "stuff", 2)):
        bad = [n for n in names if n not in pool]
        if bad:
            raise ValueError(f"unknown {what} class {bad[0]!r}{style}; choose from "
                             f"{', '.join(pool)}")
        if len(set(names)) != len(names) or len(names) < least:
            raise ValueError(f"{what} classes must be {least}+ distinct names, got "
                             f"{', '.join(names) or 'none'}")
    if not 0.1 <= object_scale <= 3.0:
        raise ValueError(f"object_scale must be in [0.1, 3], got {object_scale}")


def categories(cfg: SynthConfig | PhotoConfig | None = None) -> list[dict[str, Any]]:
    """COCO panoptic categories: things ``1..T``, then stuff (default: 1..5 and 6..9)."""
    if cfg is not None and not isinstance(cfg, SynthConfig):  # another style's settings
        from jtsm.data.synth_photo import photo_categories

        return photo_categories(cfg)
    cfg = cfg or SynthConfig()
    cats = [{"id": i + 1, "name": n, "isthing": 1, "supercategory": "shape"}
            for i, n in enumerate(cfg.things)]
    cats += [{"id": len(cfg.things) + i + 1, "name": n, "isthing": 0,
              "supercategory": "texture"} for i, n in enumerate(cfg.stuff)]
    return cats


# ---- stuff ---------------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field ``(h, w)`` in roughly [-1, 1] (upsampled coarse noise)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _stuff_layout(rng: np.random.Generator, h: int, w: int, k: int) -> np.ndarray:
    """Partition the image into ``k`` amorphous regions: ``(h, w)`` labels in ``[0, k)``.

    Each region is the argmax of a smooth field plus a random ramp, so regions are large and
    connected-ish with irregular borders; a region under 4% of the image is dropped.
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fields = []
    for _ in range(k):
        ang = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) * 3.0
        fields.append(ramp + 0.8 * _smooth_field(rng, h, w, 4) + 0.3 * _smooth_field(rng, h, w, 9))
    f = np.stack(fields)
    alive = list(range(k))
    while True:
        lab = np.argmax(f[alive], axis=0)
        areas = np.bincount(lab.ravel(), minlength=len(alive))
        small = [alive[i] for i in range(len(alive)) if areas[i] < 0.04 * h * w]
        if not small or len(alive) == 1:
            break
        alive.remove(small[0])
    return np.asarray(alive)[lab]


def _texture(rng: np.random.Generator, name: str, h: int, w: int) -> np.ndarray:
    """Texture value ``t`` in [0, 1], ``(h, w)``, of the texture ``name``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = min(h, w) / 128.0
    if name in _EXTRA_TEXTURES:
        return _EXTRA_TEXTURES[name](rng, xx, yy, scale).astype(np.float32)
    if name == "stripes":  # a straight periodic pattern, random orientation and period
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(6, 11) * scale
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)
    elif name == "dots":  # a jittered lattice of small blobs
        period = rng.uniform(7, 11) * scale
        ang = rng.uniform(0, np.pi)
        u = xx * np.cos(ang) + yy * np.sin(ang)
        v = -xx * np.sin(ang) + yy * np.cos(ang)
        t = (np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)) ** 2
        t = np.clip(t * 2.5, 0, 1)
    elif name == "grain":  # fine random noise
        t = rng.random((h, w)).astype(np.float32)
        t = cv2.GaussianBlur(t, (0, 0), 0.7)
        t = np.clip((t - t.mean()) * 3.0 + 0.5, 0, 1)
    else:  # waves: wavy lines
        period = rng.uniform(7, 12) * scale
        amp = rng.uniform(3, 6) * scale
        wl = rng.uniform(18, 30) * scale
        if rng.random() < 0.5:
            xx, yy = yy, xx
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (yy + amp * np.sin(2 * np.pi * xx / wl)) / period)
    return t.astype(np.float32)


def _checker(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
             scale: float) -> np.ndarray:
    """Checkerboard: random orientation and period, soft edges."""
    period = rng.uniform(8, 14) * scale
    ang = rng.uniform(0, np.pi)
    u = xx * np.cos(ang) + yy * np.sin(ang)
    v = -xx * np.sin(ang) + yy * np.cos(ang)
    t = np.sin(np.pi * u / period) * np.sin(np.pi * v / period)
    return np.clip(0.5 + 2.0 * t, 0, 1)


def _blotches(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
              scale: float) -> np.ndarray:
    """Camouflage: a thresholded smooth random field (blobs a few pixels across)."""
    h, w = xx.shape
    cells = max(4, int(round(min(h, w) / (9 * scale))))
    f = _smooth_field(rng, h, w, cells)
    return np.clip(0.5 + 3.0 * f, 0, 1)


def _hatch(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
           scale: float) -> np.ndarray:
    """Cross-hatching: two sets of thin lines at a random angle apart."""
    period = rng.uniform(6, 10) * scale
    a1 = rng.uniform(0, np.pi)
    a2 = a1 + rng.uniform(np.pi / 4, 3 * np.pi / 4)
    near = [np.abs(np.sin(np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period)) for a in (a1, a2)]
    return (np.minimum(*near) < 0.35).astype(np.float32)  # on either set of lines


def _rings(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray,
           scale: float) -> np.ndarray:
    """Concentric rings around a random centre (inside or near the image)."""
    h, w = xx.shape
    cx, cy = rng.uniform(-0.2 * w, 1.2 * w), rng.uniform(-0.2 * h, 1.2 * h)
    period = rng.uniform(6, 11) * scale
    return 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(xx - cx, yy - cy) / period)


_EXTRA_TEXTURES = {"checker": _checker, "blotches": _blotches, "hatch": _hatch, "rings": _rings}


def _stuff_colours(rng: np.random.Generator, name: str) -> tuple[np.ndarray, np.ndarray]:
    base = _STUFF_BASE[STUFF_TEXTURES.index(name)] + rng.normal(0, 35, 3)
    c1 = np.clip(base + rng.normal(0, 20, 3), 10, 245)
    c2 = np.clip(base + rng.choice([-1, 1]) * rng.uniform(40, 80), 10, 245)
    return c1.astype(np.float32), c2.astype(np.float32)


# ---- things --------------------------------------------------------------------------------
def _polygon(cx: float, cy: float, ang: np.ndarray, rr: np.ndarray) -> np.ndarray:
    pts = np.stack([cx + rr * np.cos(ang), cy + rr * np.sin(ang)], axis=1)
    return np.round(pts * 16).astype(np.int32)  # 4 fractional bits for cv2


def _shape_polygon(name: str, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    """Vertices (cv2 fixed point) of the polygonal shapes."""
    if name == "square":
        ang = rot + np.pi / 4 + np.arange(4) * np.pi / 2
        rr = np.full(4, r)
    elif name == "triangle":
        ang = rot + np.arange(3) * 2 * np.pi / 3
        rr = np.full(3, r * 1.15)
    elif name == "star":
        ang = rot + np.arange(10) * np.pi / 5
        rr = np.where(np.arange(10) % 2 == 0, r * 1.15, r * 0.5)
    elif name == "hexagon":
        ang = rot + np.arange(6) * np.pi / 3
        rr = np.full(6, r)
    elif name in ("cross", "bar"):
        # corners in the shape's own frame, then rotated: a plus of arm width 0.7r, or a
        # 2.2r x 0.7r bar
        a, b = 1.1 * r, 0.35 * r
        if name == "cross":
            xs = np.array([b, a, a, b, b, -b, -b, -a, -a, -b, -b, b])
            ys = np.array([b, b, -b, -b, -a, -a, -b, -b, b, b, a, a])
        else:
            xs, ys = np.array([a, -a, -a, a]), np.array([b, b, -b, -b])
        ang = rot + np.arctan2(ys, xs)
        rr = np.hypot(xs, ys)
    else:
        raise ValueError(f"{name!r} is not a polygon")
    return _polygon(cx, cy, ang, rr)


def _thing_mask(name: str, h: int, w: int, cx: float, cy: float, r: float,
                rot: float, aspect: float) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    centre = (round(cx * 16), round(cy * 16))
    if name == "disc":  # an ellipse of mild aspect
        axes = (round(r * aspect * 16), round(r / aspect * 16))
        cv2.ellipse(m, centre, axes, math.degrees(rot), 0, 360, 1, -1, cv2.LINE_8, 4)
    elif name == "ring":  # an annulus
        cv2.circle(m, centre, round(r * 16), 1, -1, cv2.LINE_8, 4)
        cv2.circle(m, centre, round(r * 0.5 * 16), 0, -1, cv2.LINE_8, 4)
    elif name == "crescent":  # a disc with an offset disc cut out
        cv2.circle(m, centre, round(r * 16), 1, -1, cv2.LINE_8, 4)
        off = (round((cx + 0.45 * r * math.cos(rot)) * 16),
               round((cy + 0.45 * r * math.sin(rot)) * 16))
        cv2.circle(m, off, round(r * 0.8 * 16), 0, -1, cv2.LINE_8, 4)
    elif name == "halfdisc":
        cv2.ellipse(m, centre, (round(r * 1.1 * 16),) * 2, math.degrees(rot), 0, 180, 1, -1,
                    cv2.LINE_8, 4)
    else:
        cv2.fillPoly(m, [_shape_polygon(name, cx, cy, r, rot)], 1, cv2.LINE_8, 4)
    return m.astype(bool)


def _thing_colour(rng: np.random.Generator, kind: int, n_classes: int,
                  bias: float) -> np.ndarray:
    """A saturated colour: near class ``kind``'s hue (of ``n_classes`` spread around the
    wheel) with probability ``bias``, else any hue."""
    if rng.random() < bias:
        hue = int(round(kind * 180 / n_classes + rng.normal(0, 18))) % 180
    else:
        hue = int(rng.integers(0, 180))
    hsv = np.uint8([[[hue, rng.integers(140, 256), rng.integers(120, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def render_image(
    seed: int, split: int, index: int, cfg: SynthConfig | PhotoConfig = SynthConfig()
) -> tuple[np.ndarray, PanopticSeg]:
    """Draw one image and its panoptic ground truth (a :class:`PhotoConfig` draws the photo
    style, :func:`jtsm.data.synth_photo.render_photo`).

    Returns:
        image: ``(H, W, 3)`` uint8 RGB.
        seg: the panoptic segmentation (segment ids 1..N, category ids of :func:`categories`).
    """
    if not isinstance(cfg, SynthConfig):
        from jtsm.data.synth_photo import render_photo

        return render_photo(seed, split, index, cfg)
    rng = np.random.default_rng([seed, split, index])
    h, w = cfg.height, cfg.width
    nt = len(cfg.things)
    # stuff: 2-3 classes, amorphous regions
    k = int(rng.integers(2, min(4, len(cfg.stuff) + 1)))
    stuff_kinds = rng.choice(len(cfg.stuff), size=k, replace=False)
    layout = _stuff_layout(rng, h, w, k)
    img = np.zeros((h, w, 3), np.float32)
    for j, kind in enumerate(stuff_kinds):
        region = layout == j
        if not region.any():
            continue
        t = _texture(rng, cfg.stuff[kind], h, w)[..., None]
        c1, c2 = _stuff_colours(rng, cfg.stuff[kind])
        img[region] = (c1 * (1 - t) + c2 * t)[region]
    # things: 1-3 classes, 1-3 instances each, painted with partial occlusion
    n_classes = int(rng.integers(1, min(4, nt + 1)))
    thing_kinds = rng.choice(nt, size=n_classes, replace=False)
    wanted = [int(c) for c in thing_kinds for _ in range(int(rng.integers(1, 4)))]
    rng.shuffle(wanted)
    wanted = wanted[: cfg.max_things]
    owner = np.full((h, w), -1, np.int64)  # index into `things`, -1 = stuff
    things: list[tuple[int, np.ndarray]] = []
    side = min(h, w)
    for kind in wanted:
        for _attempt in range(20):
            r = rng.uniform(0.08, 0.2) * side * cfg.object_scale
            cx = rng.uniform(r * 0.6, w - r * 0.6)
            cy = rng.uniform(r * 0.6, h - r * 0.6)
            m = _thing_mask(cfg.things[kind], h, w, cx, cy, r, rng.uniform(0, 2 * np.pi),
                            rng.uniform(0.8, 1.25))
            if m.sum() < cfg.min_visible * 2:
                continue
            # keep occlusion partial: every earlier instance keeps >= 55% of its area visible
            ok = all(
                ((owner == i) & ~m).sum() >= 0.55 * full.sum() for i, (_, full) in enumerate(things)
            )
            if ok:
                break
        else:
            continue
        colour = _thing_colour(rng, kind, nt, cfg.thing_colour_bias)
        yy, xx = np.nonzero(m)
        # shading: a linear ramp across the object, light from a random side
        ang = rng.uniform(0, 2 * np.pi)
        ramp = ((xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)) / max(r, 1.0)
        shade = 1.0 + 0.18 * ramp[:, None]
        img[yy, xx] = np.clip(colour[None, :] * shade, 0, 255)
        owner[m] = len(things)
        things.append((kind, m))
    # camera: blur, noise
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    image = np.clip(img, 0, 255).round().astype(np.uint8)
    # panoptic ground truth
    ids = np.zeros((h, w), np.int64)
    segments: list[dict[str, Any]] = []
    next_id = 1
    for j, kind in enumerate(stuff_kinds):
        region = (layout == j) & (owner < 0)
        if region.sum() == 0:
            continue
        ids[region] = next_id
        segments.append({"id": next_id, "category_id": nt + int(kind) + 1, "iscrowd": 0})
        next_id += 1
    for i, (kind, _) in enumerate(things):
        vis = owner == i
        if vis.sum() < cfg.min_visible:
            continue  # too small to count: void
        ids[vis] = next_id
        segments.append({"id": next_id, "category_id": kind + 1, "iscrowd": 0})
        next_id += 1
    # tiny thing parts left unassigned stay void (ids == 0)
    return image, PanopticSeg(ids, segments).with_stats()


def _encode_jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def write_synth_dataset(
    out: str | os.PathLike[str],
    n_train: int = 200,
    n_val: int = 50,
    cfg: SynthConfig | PhotoConfig = SynthConfig(),
    seed: int = 0,
    progress: Any = None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write ``out/images/``, ``out/annotations/panoptic_{train,val}.json`` and PNG folders.

    ``out`` is a new or empty folder, or one holding a dataset an earlier run wrote (its record
    ``out/.jtsm-synth`` lists the files); any other folder is refused unless ``overwrite``,
    which writes into it, replacing files of the dataset's names (:mod:`jtsm.rundir.outputs`).
    A file synth did not write, or one of its own changed since, is never removed; the second is not
    replaced without ``overwrite`` either. The files are written beside ``out`` first and
    replace the previous dataset's as a set at the end: a failed or killed run leaves a previous
    dataset whole, and a smaller one never keeps the images of a larger one. Other entries of
    ``out`` (a proposal store, runs) are left alone.

    Returns counts: images and segments per split.

    Raises:
        JtsmError: ``out`` is refused (above), before any image is drawn.
    """
    from jtsm.rundir.outputs import OutputFolder

    names = [f"annotations/panoptic_{split}.json" for split in ("train", "val")]
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            names += [f"images/{split}_{i:06d}.jpg",
                      f"annotations/panoptic_{split}/{split}_{i:06d}.png"]
    folder = OutputFolder.claim(out, "data synth", names, overwrite)
    with folder.staged() as stage:
        return _write_synth(stage, n_train, n_val, cfg, seed, progress)


def _write_synth(out: Path, n_train: int, n_val: int, cfg: SynthConfig | PhotoConfig, seed: int,
                 progress: Any) -> dict[str, int]:
    (out / "images").mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split_idx, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        images, segs = [], []
        it = range(n) if progress is None else progress(range(n), n, f"synth {split}")
        for i in it:
            image, seg = render_image(seed, split_idx, i, cfg)
            name = f"{split}_{i:06d}.jpg"
            atomic_write_bytes(out / "images" / name, _encode_jpeg(image))
            images.append({"id": split_idx * 1_000_000 + i + 1, "file_name": name,
                           "height": cfg.height, "width": cfg.width})
            segs.append(seg)
        write_panoptic_dataset(out / "annotations" / f"panoptic_{split}.json", images,
                               categories(cfg), segs,
                               extra={"info": {"description": "jtsm synth", "seed": seed}})
        counts[f"{split}_images"] = n
        counts[f"{split}_segments"] = sum(len(s.segments) for s in segs)
    return counts
