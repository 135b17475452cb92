"""The photo-like style of the generated dataset (``jtsm data synth --style photo``).

The default style's things are flat, saturated shapes over textured stuff: a colour edge
outlines every thing. In photos a thing often differs from its surroundings by **shape and
shading only**: a backlit dark silhouette with thin legs, a glossy object whose colours also
occur in the background, an animal whose coat looks like the grass it stands in. This style
draws scenes of that kind, all from procedural primitives:

- **stuff** (``grass``, ``road``, ``wall``, ``water``, ``sky``): textures laid out like an
  outdoor view: sky above a wavy horizon, walls as a stepped skyline or a backdrop, the ground
  below split into a meadow, a lake or a road running to a vanishing point. 2-4 classes per
  image, one segment per class as in COCO panoptic;
- **things** (``quadruped``, ``chair``, ``lamp``, ``bicycle``, ``bottle``): articulated
  silhouettes with thin parts (legs 1.5-3 px wide at 128 px, chair legs and slats, lamp posts,
  wheel rims and frame tubes), standing on the ground, larger when nearer, painted far to near
  so nearer ones occlude farther ones (every instance keeps at least half of its pixels).
  1-3 classes per image, 1-4 instances each;
- **materials**, chosen per instance independently of the class: ``camouflage`` (the texture
  and colours of a stuff class of the same image, so only outline and shading separate the
  thing from that region), ``silhouette`` (dark, as against the light) and ``glossy`` (the
  mean colour of a stuff region of the image, with a specular highlight);
- **light**: one direction per image; each thing gets a gradient along it, a rounded-volume
  term and a weak highlight (a strong one when glossy) and casts a soft shadow on the ground;
- **clutter**: small shaded stones, leaves and stains of no class. They are not segments: in
  the panoptic ground truth their pixels belong to the stuff region they lie on, as a pebble
  on a road is part of COCO's ``road``;
- a camera: white balance, vignetting, blur and sensor noise.

Visible thing parts smaller than ``min_visible`` pixels are void (id 0), as in the default
style. Each image is drawn from its own RNG seeded by ``(seed, split, index)``: output is
deterministic per seed and independent of how many images are made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
from scipy import ndimage

from jtsm.structures import PanopticSeg

__all__ = ["PHOTO_THINGS", "PHOTO_STUFF", "MATERIALS", "PhotoConfig", "PhotoScene",
           "ThingInfo", "photo_categories", "render_photo", "render_scene"]

#: The photo style's classes (all of them are the default).
PHOTO_THINGS: tuple[str, ...] = ("quadruped", "chair", "lamp", "bicycle", "bottle")
PHOTO_STUFF: tuple[str, ...] = ("grass", "road", "wall", "water", "sky")
#: How a thing's surface is drawn (see the module docstring).
MATERIALS: tuple[str, ...] = ("camouflage", "silhouette", "glossy")

#: A style tag mixed into the RNG seed, so the photo style's images do not share random draws
#: with the default style's images of the same ``(seed, split, index)``.
_STYLE_SALT = 0x50484F54


@dataclass(frozen=True)
class PhotoConfig:
    """Settings of the photo-like style.

    Arguments:
        height, width: image size in pixels.
        min_visible: visible thing parts smaller than this many pixels become void.
        max_things: at most this many thing instances per image.
        things, stuff: the classes, names from :data:`PHOTO_THINGS` / :data:`PHOTO_STUFF` (at
            least 1 thing and 2 stuff classes).
        object_scale: thing heights are a class's range (a fraction of the image height, e.g.
            0.18-0.35 for a quadruped) times the perspective factor times this.
        camouflage, silhouette: probabilities of those materials (the rest is ``glossy``).
        clutter: most distractor blobs per image (at least a third of this many are drawn).
    """

    height: int = 128
    width: int = 128
    min_visible: int = 30
    max_things: int = 7
    things: tuple[str, ...] = PHOTO_THINGS
    stuff: tuple[str, ...] = PHOTO_STUFF
    object_scale: float = 1.0
    camouflage: float = 0.45
    silhouette: float = 0.25
    clutter: int = 12

    def __post_init__(self) -> None:
        from jtsm.data.synth import check_classes

        check_classes(self.things, PHOTO_THINGS, self.stuff, PHOTO_STUFF, self.object_scale,
                      " of the photo style")
        if not (0 <= self.camouflage and 0 <= self.silhouette
                and self.camouflage + self.silhouette <= 1):
            raise ValueError(f"camouflage ({self.camouflage}) and silhouette "
                             f"({self.silhouette}) must be probabilities summing to 1 or less")
        if self.clutter < 0 or self.max_things < 1 or self.min_visible < 1:
            raise ValueError("clutter must be >= 0, max_things and min_visible >= 1")


def photo_categories(cfg: PhotoConfig | None = None) -> list[dict[str, Any]]:
    """COCO panoptic categories: things ``1..T``, then stuff (default: 1..5 and 6..10)."""
    cfg = cfg or PhotoConfig()
    cats = [{"id": i + 1, "name": n, "isthing": 1, "supercategory": "object"}
            for i, n in enumerate(cfg.things)]
    cats += [{"id": len(cfg.things) + i + 1, "name": n, "isthing": 0,
              "supercategory": "surface"} for i, n in enumerate(cfg.stuff)]
    return cats


@dataclass(frozen=True)
class ThingInfo:
    """How one drawn thing instance was made (for tests and analysis).

    Attributes:
        category_id: its category.
        segment_id: its segment in the ground truth, 0 where too little of it is visible.
        area: pixels of the whole object, the occluded ones included.
        material: one of :data:`MATERIALS`.
        source_category_id: the stuff category whose look it took (``camouflage``: texture and
            colours; ``glossy``: mean colour), ``None`` for a silhouette.
    """

    category_id: int
    segment_id: int
    area: int
    material: str
    source_category_id: int | None


@dataclass(frozen=True)
class PhotoScene:
    """One drawn image: ``image`` ``(H, W, 3)`` uint8 RGB, its panoptic ``seg`` and how each
    thing was drawn (``things``, in painting order: far to near)."""

    image: np.ndarray
    seg: PanopticSeg
    things: tuple[ThingInfo, ...]


# ---- stuff ---------------------------------------------------------------------------------
def _smooth(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """A smooth random field ``(h, w)``, roughly unit variance (upsampled coarse noise)."""
    coarse = rng.standard_normal((max(2, cells[0]), max(2, cells[1]))).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _mix(t: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """``(h, w, 3)``: colour ``c1`` where ``t`` = 0 to ``c2`` where ``t`` = 1."""
    t = np.clip(t, 0, 1)[..., None]
    return c1[None, None] * (1 - t) + c2[None, None] * t


@dataclass(frozen=True)
class _Look:
    """A stuff class's appearance in one image: its name and two or three colours (RGB).

    :meth:`render` draws it with fresh random phases, so a thing of ``camouflage`` material
    has the same colours and texture statistics as the region, not the same pixels.
    """

    name: str
    colours: tuple[np.ndarray, ...]

    def render(self, rng: np.random.Generator, h: int, w: int, horizon: float) -> np.ndarray:
        """``(h, w, 3)`` float32 RGB of the whole frame."""
        return _TEXTURES[self.name](rng, self.colours, h, w, horizon).astype(np.float32)


def _look(rng: np.random.Generator, name: str) -> _Look:
    """A random look of the stuff class ``name``: one of its palettes, jittered."""
    palettes = _PALETTES[name]
    base = np.asarray(palettes[int(rng.integers(len(palettes)))], np.float32)
    shift = rng.normal(0, 14, 3).astype(np.float32) + rng.normal(0, 10)
    return _Look(name, tuple(np.clip(c + shift, 5, 250).astype(np.float32) for c in base))


#: Palettes per stuff class: (dark/base, light/second, accent) RGB. Several per class and
#: overlapping across classes (grey road, grey wall, grey water, overcast sky).
_PALETTES: dict[str, list[list[list[float]]]] = {
    "grass": [[[60, 105, 40], [105, 150, 60], [40, 70, 30]],
              [[130, 125, 60], [170, 160, 90], [95, 90, 45]],
              [[75, 95, 55], [110, 125, 80], [55, 65, 40]]],
    "road": [[[80, 80, 82], [115, 113, 110], [200, 200, 190]],
             [[105, 100, 95], [140, 135, 125], [210, 190, 90]],
             [[60, 60, 64], [90, 88, 88], [180, 180, 175]]],
    "wall": [[[140, 70, 50], [175, 105, 80], [200, 190, 175]],
             [[175, 160, 135], [205, 190, 165], [120, 110, 95]],
             [[115, 115, 120], [150, 150, 150], [85, 85, 90]]],
    "water": [[[40, 75, 120], [80, 125, 170], [220, 230, 240]],
              [[55, 90, 85], [95, 130, 120], [210, 225, 220]],
              [[95, 105, 115], [135, 145, 150], [225, 225, 225]]],
    "sky": [[[70, 120, 200], [165, 200, 235], [245, 245, 250]],
            [[140, 145, 155], [190, 192, 198], [225, 225, 228]],
            [[90, 100, 160], [230, 160, 110], [250, 220, 190]]],
}


def _grass(rng: np.random.Generator, col: tuple[np.ndarray, ...], h: int, w: int,
           horizon: float) -> np.ndarray:
    """Blades: noise stretched vertically, over patches of two greens; finer far away."""
    s = min(h, w) / 128.0
    blades = rng.standard_normal((h, w)).astype(np.float32)
    blades = cv2.GaussianBlur(blades, (0, 0), sigmaX=0.6 * s, sigmaY=2.2 * s)
    blades /= blades.std() + 1e-6
    patches = _smooth(rng, h, w, (int(4 / s) + 3, int(5 / s) + 3))
    img = _mix(0.5 + 0.35 * patches, col[0], col[1])
    return img + (col[1] - col[2])[None, None] * (0.22 * blades)[..., None]


def _road(rng: np.random.Generator, col: tuple[np.ndarray, ...], h: int, w: int,
          horizon: float) -> np.ndarray:
    """Asphalt: fine grain, large stains, sometimes a painted line along the road."""
    s = min(h, w) / 128.0
    grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.6)
    stains = _smooth(rng, h, w, (int(3 / s) + 3, int(3 / s) + 3))
    img = _mix(0.45 + 0.2 * stains + 0.12 * grain, col[0], col[1])
    if rng.random() < 0.5:  # a lane line towards a vanishing point on the horizon
        vx = rng.uniform(0.3, 0.7) * w
        bx = rng.uniform(0.1, 0.9) * w
        line = np.zeros((h, w), np.uint8)
        cv2.line(line, (round(vx), round(max(horizon, 0))), (round(bx), h - 1), 1,
                 max(1, round(2 * s)))
        dashes = (np.sin(np.arange(h) / (4 * s)) > -0.2).astype(np.float32)[:, None]
        t = cv2.GaussianBlur(line.astype(np.float32), (0, 0), 0.5) * dashes
        img = img * (1 - 0.8 * t[..., None]) + col[2][None, None] * 0.8 * t[..., None]
    return img


def _wall(rng: np.random.Generator, col: tuple[np.ndarray, ...], h: int, w: int,
          horizon: float) -> np.ndarray:
    """Bricks (or blocks): courses with offset joints, mortar lines, per-brick tone."""
    s = min(h, w) / 128.0
    bh = rng.uniform(4.5, 8.0) * s
    bw = bh * rng.uniform(1.8, 3.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    course = np.floor(yy / bh)
    xs = xx + (course % 2) * bw / 2 + rng.uniform(0, bw)
    brick = np.floor(xs / bw)
    key = (course * 7919 + brick * 104729).astype(np.int64) % 1021
    tone = np.random.default_rng(int(rng.integers(1 << 31))).random(1021).astype(np.float32)
    t = 0.25 + 0.5 * tone[key]
    mortar = (np.minimum(yy % bh, bh - yy % bh) < 0.6 * s) | \
        (np.minimum(xs % bw, bw - xs % bw) < 0.6 * s)
    img = _mix(t, col[0], col[1])
    img[mortar] = img[mortar] * 0.3 + col[2] * 0.7
    grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.7)
    return img + 6 * grain[..., None]


def _water(rng: np.random.Generator, col: tuple[np.ndarray, ...], h: int, w: int,
           horizon: float) -> np.ndarray:
    """Ripples: horizontal waves bent by a smooth field, with sparse glints."""
    s = min(h, w) / 128.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bend = _smooth(rng, h, w, (int(6 / s) + 3, int(4 / s) + 3)) * 3 * s
    period = rng.uniform(3.0, 5.0) * s
    waves = np.sin(2 * np.pi * (yy + bend) / period + 0.1 * xx / s)
    depth = _smooth(rng, h, w, (3, 3))
    img = _mix(0.5 + 0.25 * waves * 0.5 + 0.25 * depth, col[0], col[1])
    glint = rng.standard_normal((h, w)).astype(np.float32)
    glint = cv2.GaussianBlur(glint, (0, 0), sigmaX=1.5 * s, sigmaY=0.4 * s)
    t = np.clip((glint / (glint.std() + 1e-6) - 2.2) * 1.5, 0, 1) * (waves > 0.3)
    return img * (1 - t[..., None]) + col[2][None, None] * t[..., None]


def _sky(rng: np.random.Generator, col: tuple[np.ndarray, ...], h: int, w: int,
         horizon: float) -> np.ndarray:
    """A vertical gradient, deeper upwards, lighter towards the horizon, with soft clouds."""
    s = min(h, w) / 128.0
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    t = np.clip(yy / max(horizon, 0.3 * h), 0, 1) ** rng.uniform(0.7, 1.5)
    img = _mix(t, col[0], col[1])
    cloud = _smooth(rng, h, w, (int(4 / s) + 3, int(7 / s) + 3)) \
        + 0.35 * _smooth(rng, h, w, (int(10 / s) + 4, int(16 / s) + 4))
    cover = rng.uniform(-0.2, 1.2)
    c = np.clip((cloud - cover) * 0.9, 0, 1)
    return img * (1 - c[..., None]) + col[2][None, None] * c[..., None]


_TEXTURES: dict[str, Callable[..., np.ndarray]] = {
    "grass": _grass, "road": _road, "wall": _wall, "water": _water, "sky": _sky}


def _profile(rng: np.random.Generator, w: int, y0: float, amp: float) -> np.ndarray:
    """``(w,)`` y of a wavy, slightly tilted line around ``y0``."""
    x = np.arange(w, dtype=np.float32)
    knots = rng.standard_normal(int(rng.integers(3, 7))).astype(np.float32)
    wave = np.interp(x, np.linspace(0, w - 1, len(knots)), knots)
    wave = cv2.GaussianBlur(wave[None], (0, 0), max(1.0, w / 20))[0]
    return y0 + amp * wave + rng.uniform(-0.06, 0.06) * (x - w / 2)


def _layout(rng: np.random.Generator, names: list[str], h: int, w: int
            ) -> tuple[np.ndarray, float]:
    """Lay ``names`` out as an outdoor view: ``(h, w)`` index into ``names`` and the horizon y.

    The sky is on top, walls stand on the horizon (a stepped skyline below the sky, or the whole
    backdrop), ground classes share what is below: the first fills it, a road is a strip
    running to a vanishing point, others are irregular areas (a lake, a meadow). Without a
    ground class a wall is the ground; without sky or wall the camera looks down (the horizon
    is at or above the top). Regions under 3% of the image go to their neighbours.
    """
    upper = [i for i, n in enumerate(names) if n in ("sky", "wall")]
    ground = [i for i, n in enumerate(names) if i not in upper]
    if not ground:  # sky and wall: the wall is what things stand in front of
        ground = [i for i in upper if names[i] == "wall"]
        upper = [i for i in upper if names[i] != "wall"]
    yy, xx = np.mgrid[0:h, 0:w]
    if upper:
        horizon = rng.uniform(0.3, 0.55) * h
    else:
        horizon = rng.uniform(-0.15, 0.1) * h
    line = _profile(rng, w, horizon, 0.03 * h)
    below = yy >= line[None, :]
    lab = np.full((h, w), ground[0], np.int64)
    sky = [i for i in upper if names[i] == "sky"]
    wall = [i for i in upper if names[i] == "wall"]
    if sky:
        lab[~below] = sky[0]
    if wall:
        if sky:  # buildings: 1-3 blocks with flat tops at different heights
            top = np.full(w, np.inf, np.float32)
            for _ in range(int(rng.integers(1, 4))):
                x0, x1 = sorted(rng.uniform(0, w, 2))
                x1 = max(x1, x0 + 0.25 * w)
                top[int(x0):int(math.ceil(x1))] = np.minimum(
                    top[int(x0):int(math.ceil(x1))], rng.uniform(0.05, 0.75) * horizon)
            lab[(yy >= top[None, :]) & ~below] = wall[0]
        else:
            lab[~below] = wall[0]
    ground_area = below.sum()
    for g in ground[1:]:
        if names[g] == "road":
            vx = rng.uniform(0.25, 0.75) * w
            half = rng.uniform(0.15, 0.4) * w
            bx = rng.uniform(0.2, 0.8) * w
            top_y = max(horizon, 0.0)
            frac = np.clip((yy - top_y) / max(h - top_y, 1.0), 0, 1)
            centre = vx + (bx - vx) * frac
            region = below & (np.abs(xx - centre) <= 0.02 * w + half * frac)
        else:
            ang = rng.uniform(0, 2 * np.pi)
            ramp = np.cos(ang) * xx / w + np.sin(ang) * yy / h
            f = ramp + 0.35 * _smooth(rng, h, w, (4, 4))
            share = rng.uniform(0.25, 0.5)
            vals = f[below]
            if vals.size == 0:
                continue
            region = below & (f >= np.quantile(vals, 1 - share))
        if region.sum() >= 0.03 * ground_area:
            lab[region] = g
    return _absorb_small(lab, 0.03 * h * w), float(horizon)


def _absorb_small(lab: np.ndarray, min_area: float) -> np.ndarray:
    """Give the pixels of labels covering under ``min_area`` pixels to the nearest other label
    (a region needs some size to be a stuff segment worth its tag)."""
    while True:
        ids, counts = np.unique(lab, return_counts=True)
        small = ids[counts < min_area]
        if small.size == 0 or ids.size == 1:
            return lab
        drop = lab == small[0]
        _, (iy, ix) = ndimage.distance_transform_edt(drop, return_indices=True)
        lab = np.where(drop, lab[iy, ix], lab)


# ---- things --------------------------------------------------------------------------------
#: Height range per thing class, as a fraction of the image height (before perspective).
_SIZES: dict[str, tuple[float, float]] = {
    "quadruped": (0.2, 0.38), "chair": (0.24, 0.42), "lamp": (0.45, 0.8),
    "bicycle": (0.24, 0.38), "bottle": (0.16, 0.32)}

_SHIFT = 4  # cv2 fixed-point fraction bits
_ONE = 1 << _SHIFT


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x * _ONE), round(y * _ONE)


def _crop(m: np.ndarray, x0: float, x1: float, y0: float, y1: float
          ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """The part of ``m`` under the box: its slices and pixel-centre coordinates, or ``None``
    when the box is off the image."""
    h, w = m.shape
    c0, c1 = max(0, math.floor(x0)), min(w, math.ceil(x1) + 1)
    r0, r1 = max(0, math.floor(y0)), min(h, math.ceil(y1) + 1)
    if c0 >= c1 or r0 >= r1:
        return None
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    return (slice(r0, r1), slice(c0, c1)), xx, yy


def _line(m: np.ndarray, p: tuple[float, float], q: tuple[float, float], width: float) -> None:
    """A bar of ``width`` px with round ends: the pixels whose centre is within ``width / 2``
    of the segment ``pq`` (cv2's thick lines are up to 2 px wider than asked)."""
    r = width / 2
    got = _crop(m, min(p[0], q[0]) - r, max(p[0], q[0]) + r,
                min(p[1], q[1]) - r, max(p[1], q[1]) + r)
    if got is None:
        return
    box, xx, yy = got
    dx, dy = q[0] - p[0], q[1] - p[1]
    t = np.clip(((xx - p[0]) * dx + (yy - p[1]) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    m[box] |= ((xx - p[0] - t * dx) ** 2 + (yy - p[1] - t * dy) ** 2 <= r * r).astype(m.dtype)


def _rim(m: np.ndarray, c: tuple[float, float], radius: float, width: float) -> None:
    """A circle's outline ``width`` px wide (pixel centres within ``width / 2`` of it)."""
    got = _crop(m, c[0] - radius - width, c[0] + radius + width,
                c[1] - radius - width, c[1] + radius + width)
    if got is None:
        return
    box, xx, yy = got
    m[box] |= (np.abs(np.hypot(xx - c[0], yy - c[1]) - radius) <= width / 2).astype(m.dtype)


def _ellipse(m: np.ndarray, c: tuple[float, float], ax: tuple[float, float],
             angle: float = 0.0) -> None:
    cv2.ellipse(m, _pt(*c), (max(1, round(ax[0] * _ONE)), max(1, round(ax[1] * _ONE))),
                angle, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)


def _poly(m: np.ndarray, pts: list[tuple[float, float]]) -> None:
    cv2.fillPoly(m, [np.array([_pt(*p) for p in pts], np.int32)], 1, cv2.LINE_8, _SHIFT)


def _limb(m: np.ndarray, start: tuple[float, float], length: float, a1: float, a2: float,
          t_upper: float, t_lower: float) -> None:
    """A two-segment leg from ``start`` down: angles from the vertical in radians, knee in the
    middle."""
    knee = (start[0] + 0.5 * length * math.sin(a1), start[1] + 0.5 * length * math.cos(a1))
    foot = (knee[0] + 0.5 * length * math.sin(a2), knee[1] + 0.5 * length * math.cos(a2))
    _line(m, start, knee, t_upper)
    _line(m, knee, foot, t_lower)


def _thin(size: float) -> float:
    """Width in px of a thin part (a leg, a tube) of a thing ``size`` px tall: 1.5-3 px for
    the sizes a 128 px image shows."""
    return max(1.5, 0.045 * size)


def _quadruped(rng: np.random.Generator, m: np.ndarray, gx: float, gy: float, S: float,
               f: int) -> None:
    """Body ellipse on four jointed legs, neck, head (with ears) and tail, facing ``f``."""
    leg = S * rng.uniform(0.38, 0.52)
    bh = S * rng.uniform(0.26, 0.34)
    bl = bh * rng.uniform(2.0, 2.8)
    cy = gy - leg - 0.35 * bh
    lt = _thin(S)
    _ellipse(m, (gx, cy), (bl / 2, bh / 2), rng.uniform(-6, 6))
    for side in (1, -1):  # front pair, rear pair
        hx = gx + f * side * bl * 0.33
        for k, dx in enumerate((-0.05, 0.05)):
            swing = rng.uniform(-0.45, 0.45)
            bend = swing + (1 if side == 1 else -1) * f * rng.uniform(0.0, 0.5) * (k + 0.5)
            _limb(m, (hx + dx * bl, cy + 0.2 * bh), leg + 0.15 * bh, swing, bend, 1.4 * lt, lt)
    neck_base = (gx + f * bl * 0.38, cy - 0.15 * bh)
    head = (gx + f * bl * rng.uniform(0.5, 0.65), cy - bh * rng.uniform(0.5, 1.3))
    _line(m, neck_base, head, max(1.5 * lt, 0.32 * bh))
    hl = bh * rng.uniform(0.32, 0.45)
    _ellipse(m, (head[0] + f * 0.35 * hl, head[1]), (hl, 0.5 * hl), f * rng.uniform(5, 30))
    _poly(m, [(head[0] - f * 0.1 * hl, head[1] - 0.3 * hl), (head[0] - f * 0.3 * hl,
              head[1] - 1.2 * hl), (head[0] + f * 0.2 * hl, head[1] - 0.4 * hl)])
    tail = (gx - f * bl * 0.5, cy - 0.2 * bh)
    tang = rng.uniform(0.3, 1.3)
    _line(m, tail, (tail[0] - f * 0.45 * bh * math.sin(tang),
                    tail[1] + 0.45 * bh * math.cos(tang) * rng.choice([-1, 1])), lt)


def _chair(rng: np.random.Generator, m: np.ndarray, gx: float, gy: float, S: float,
           f: int) -> None:
    """Seat on four legs (three-quarter view), two back posts with slats or a panel."""
    seat_y = gy - S * rng.uniform(0.42, 0.52)
    depth = S * rng.uniform(0.32, 0.45)
    lt = _thin(S)
    st = max(2, round(S * 0.06))
    ox, oy = f * depth * rng.uniform(0.25, 0.45), -S * 0.07  # the far side's offset
    front, back = gx + f * depth / 2, gx - f * depth / 2
    for dx, dy in ((ox, oy), (0.0, 0.0)):  # far legs first: same mask either way
        splay = rng.uniform(0, 0.12)
        _line(m, (front + dx, seat_y + dy), (front + dx + f * splay * S, gy + dy), lt)
        _line(m, (back + dx, seat_y + dy), (back + dx - f * splay * S, gy + dy), lt)
    _poly(m, [(back, seat_y), (front, seat_y), (front + ox, seat_y + oy), (back + ox, seat_y + oy)])
    _poly(m, [(back, seat_y), (front, seat_y), (front, seat_y + st), (back, seat_y + st)])
    tilt = f * rng.uniform(0.03, 0.15) * S
    top = gy - S
    posts = [((back, seat_y), (back - tilt, top)),
             ((back + ox, seat_y + oy), (back + ox - tilt, top + oy))]
    for p, q in posts:
        _line(m, p, q, lt)
    _line(m, posts[0][1], posts[1][1], 1.3 * lt)  # top rail
    if rng.random() < 0.5:
        for k in range(int(rng.integers(1, 4))):  # slats
            a = 0.35 + 0.6 * rng.random() if k else 0.55
            pa = (posts[0][0][0] + a * (posts[0][1][0] - posts[0][0][0]),
                  posts[0][0][1] + a * (posts[0][1][1] - posts[0][0][1]))
            pb = (posts[1][0][0] + a * (posts[1][1][0] - posts[1][0][0]),
                  posts[1][0][1] + a * (posts[1][1][1] - posts[1][0][1]))
            _line(m, pa, pb, max(1.5, 0.8 * lt))
    else:  # a panel on the upper half of the back
        a = rng.uniform(0.35, 0.6)
        _poly(m, [posts[0][1], posts[1][1],
                  (posts[1][0][0] + (1 - a) * (posts[1][1][0] - posts[1][0][0]),
                   posts[1][0][1] + (1 - a) * (posts[1][1][1] - posts[1][0][1])),
                  (posts[0][0][0] + (1 - a) * (posts[0][1][0] - posts[0][0][0]),
                   posts[0][0][1] + (1 - a) * (posts[0][1][1] - posts[0][0][1]))])


def _lamp(rng: np.random.Generator, m: np.ndarray, gx: float, gy: float, S: float,
          f: int) -> None:
    """A thin post on a base, topped by an arm with a hanging head, a lantern or a T bar."""
    pt = max(1.5, 0.025 * S)
    top = gy - S
    bw = max(3.0, S * 0.05)
    _poly(m, [(gx - bw, gy), (gx + bw, gy), (gx + 0.5 * bw, gy - 0.08 * S),
              (gx - 0.5 * bw, gy - 0.08 * S)])
    _line(m, (gx, gy), (gx, top + 0.02 * S), pt)
    kind = int(rng.integers(3))
    head = max(3.0, S * rng.uniform(0.05, 0.08))
    if kind == 0:  # a curved arm and a hanging head
        reach = S * rng.uniform(0.15, 0.28)
        pts = [(gx + f * reach * (1 - math.cos(a)), top + 0.12 * S * (1 - math.sin(a)))
               for a in np.linspace(0, np.pi / 2, 7)]
        pts = [(gx, top + 0.12 * S)] + pts[1:]
        for p, q in zip(pts[:-1], pts[1:]):
            _line(m, p, q, pt)
        hx, hy = pts[-1]
        _poly(m, [(hx - f * 0.3 * head, hy), (hx + f * 1.5 * head, hy),
                  (hx + f * 1.2 * head, hy + 0.9 * head), (hx, hy + 0.9 * head)])
    elif kind == 1:  # a lantern on top
        _poly(m, [(gx - 0.7 * head, top + 1.6 * head), (gx + 0.7 * head, top + 1.6 * head),
                  (gx + head, top + 0.3 * head), (gx - head, top + 0.3 * head)])
        _poly(m, [(gx - 1.2 * head, top + 0.35 * head), (gx + 1.2 * head, top + 0.35 * head),
                  (gx, top - 0.5 * head)])
    else:  # a T bar with two globes
        arm = S * rng.uniform(0.1, 0.2)
        _line(m, (gx - arm, top + 0.1 * S), (gx + arm, top + 0.1 * S), pt)
        for sx in (-1, 1):
            _ellipse(m, (gx + sx * arm, top + 0.1 * S - 0.7 * head), (0.7 * head, 0.8 * head))


def _bicycle(rng: np.random.Generator, m: np.ndarray, gx: float, gy: float, S: float,
             f: int) -> None:
    """Two wheel rims, the frame's tubes, fork, saddle and handlebar, side view."""
    r = S * rng.uniform(0.3, 0.36)
    d = r * rng.uniform(2.2, 2.6)
    rt = max(1.5, 0.1 * r)
    ft = _thin(S)
    rear = (gx - f * d / 2, gy - r)
    front = (gx + f * d / 2, gy - r)
    for c in (rear, front):
        _rim(m, c, r, rt)
        _ellipse(m, c, (max(1.0, 0.08 * r), max(1.0, 0.08 * r)))  # hub
    bb = (gx - f * 0.05 * d, gy - 0.9 * r)
    seat = (bb[0] - f * 0.3 * r, gy - r - rng.uniform(0.95, 1.2) * r)
    head = (front[0] - f * 0.35 * r, gy - r - rng.uniform(0.9, 1.1) * r)
    for p, q in ((rear, bb), (rear, seat), (bb, seat), (bb, head), (seat, head), (head, front)):
        _line(m, p, q, ft)
    _line(m, (seat[0] - f * 0.25 * r, seat[1] - 0.12 * r), (seat[0] + f * 0.2 * r,
          seat[1] - 0.12 * r), 1.6 * ft)  # saddle
    bar = (head[0] - f * rng.uniform(0.0, 0.25) * r, head[1] - rng.uniform(0.15, 0.35) * r)
    _line(m, head, bar, ft)
    _line(m, bar, (bar[0] - f * 0.2 * r, bar[1] + 0.05 * r), ft)


def _bottle(rng: np.random.Generator, m: np.ndarray, gx: float, gy: float, S: float,
            f: int) -> None:
    """Body, rounded shoulders, neck and cap; upright or slightly tilted."""
    bw = S * rng.uniform(0.13, 0.2)
    body = S * rng.uniform(0.5, 0.62)
    nw = bw * rng.uniform(0.3, 0.45)
    tilt = rng.uniform(-0.15, 0.15)

    def at(x: float, y: float) -> tuple[float, float]:  # bottle frame -> image (rotated)
        return (gx + x * math.cos(tilt) - y * math.sin(tilt),
                gy + x * math.sin(tilt) + y * math.cos(tilt))

    _poly(m, [at(-bw, 0), at(bw, 0), at(bw, -body), at(-bw, -body)])
    c = at(0, -body)
    _ellipse(m, c, (bw, 0.45 * bw * 2), math.degrees(tilt))
    neck_top = -S * rng.uniform(0.9, 0.97)
    _poly(m, [at(-nw, -body), at(nw, -body), at(nw, neck_top), at(-nw, neck_top)])
    _poly(m, [at(-1.25 * nw, neck_top), at(1.25 * nw, neck_top), at(1.25 * nw, -S),
              at(-1.25 * nw, -S)])


_DRAW: dict[str, Callable[..., None]] = {
    "quadruped": _quadruped, "chair": _chair, "lamp": _lamp, "bicycle": _bicycle,
    "bottle": _bottle}


def _shade(m: np.ndarray, light: tuple[float, float], strength: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shading of the object ``m``: ``(ys, xs, factor)`` of its pixels.

    ``factor`` = 1 + ``strength`` x (position along the light direction, -1..1 over the
    object) + a rounded-volume term from the distance to the object's outline (thin parts
    darker than thick ones).
    """
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    ext = max(float(np.ptp(xs)), float(np.ptp(ys)), 2.0) / 2
    along = ((xs - cx) * light[0] + (ys - cy) * light[1]) / ext
    dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 3)[ys, xs]
    volume = np.sqrt(dist / max(float(dist.max()), 1.0))
    return ys, xs, 1.0 + strength * along + 0.25 * (volume - 0.6)


def _highlight(m: np.ndarray, light: tuple[float, float], sigma: float) -> np.ndarray:
    """A Gaussian spot (peak 1) where the object ``m`` faces the light most: its values at the
    object's pixels, ``(N,)`` in ``np.nonzero(m)`` order."""
    dist = cv2.distanceTransform(m.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(m)
    ext = max(float(np.ptp(xs)), float(np.ptp(ys)), 2.0) / 2
    score = ((xs - xs.mean()) * light[0] + (ys - ys.mean()) * light[1]) / ext \
        + 1.5 * dist[ys, xs] / max(float(dist.max()), 1.0)
    k = int(np.argmax(score))
    d2 = (xs - xs[k]).astype(np.float32) ** 2 + (ys - ys[k]).astype(np.float32) ** 2
    return np.exp(-d2 / (2 * sigma ** 2)).astype(np.float32)


def _shadow(m: np.ndarray, gy: float, light: tuple[float, float], S: float) -> np.ndarray:
    """``(h, w)`` a soft shadow in [0, 1]: the object flattened onto the ground at ``gy`` and
    thrown away from the light."""
    h, w = m.shape
    squash = 0.25
    shear = light[0] / max(abs(light[1]), 0.3) * 0.6
    # an object point at height gy - y above the ground lands squash * (gy - y) below gy,
    # moved sideways away from the light (light from the left: the shadow falls right)
    a = np.float32([[1, shear * squash, -shear * squash * gy],
                    [0, -squash, gy * (1 + squash)]])
    flat = cv2.warpAffine(m.astype(np.float32), a, (w, h), flags=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(flat, (0, 0), 0.6 + 0.04 * S)


# ---- clutter -------------------------------------------------------------------------------
def _blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float
          ) -> np.ndarray:
    """``(h, w)`` bool: an irregular polygon (a stone, a leaf, a stain) of radius ~``r``."""
    n = int(rng.integers(6, 11))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rr = r * rng.uniform(0.6, 1.2, n)
    squash = rng.uniform(0.45, 1.0)
    pts = [(cx + a * math.cos(t), cy + a * squash * math.sin(t)) for t, a in zip(ang, rr)]
    m = np.zeros((h, w), np.uint8)
    _poly(m, pts)
    return m.astype(bool)


# ---- the image -----------------------------------------------------------------------------
class _Placed(NamedTuple):
    """A thing placed in the scene: ground contact ``gy`` (its depth), class index, ``(h, w)``
    bool mask of the whole object, height ``size`` in px."""

    gy: float
    kind: int
    mask: np.ndarray
    size: float


def _choose(rng: np.random.Generator, cfg: PhotoConfig) -> list[int]:
    """Thing categories (indices into ``cfg.things``) of one image: 1-3 classes, 1-4
    instances each (more instances less often), shuffled, at most ``max_things``."""
    nt = len(cfg.things)
    n_classes = int(rng.integers(1, min(3, nt) + 1))
    kinds = rng.choice(nt, size=n_classes, replace=False)
    wanted = [int(c) for c in kinds for _ in range(int(rng.choice(4, p=[.4, .3, .2, .1])) + 1)]
    rng.shuffle(wanted)
    return wanted[: cfg.max_things]


def _visible(placed: list[_Placed]) -> list[int]:
    """Visible pixels of each placed thing once all are painted far (small ``gy``) to near."""
    out = []
    for p in placed:
        cover = np.zeros_like(p.mask)
        for q in placed:
            if q.gy > p.gy:
                cover |= q.mask
        out.append(int((p.mask & ~cover).sum()))
    return out


def _place_things(rng: np.random.Generator, cfg: PhotoConfig, ground_top: float,
                  depth_scale: Callable[[float], float]) -> list[_Placed]:
    """Stand the image's things on the ground, far to near (sorted by ``gy``): up to 20 tries
    each to find a spot where every thing placed so far keeps >= 50% of its pixels visible."""
    h, w = cfg.height, cfg.width
    placed: list[_Placed] = []
    for kind in _choose(rng, cfg):
        name = cfg.things[kind]
        for _attempt in range(20):
            gy = rng.uniform(ground_top + 0.12 * (h - ground_top), h * 1.02)
            gx = rng.uniform(0.05, 0.95) * w
            size = rng.uniform(*_SIZES[name]) * h * cfg.object_scale * depth_scale(gy)
            m = np.zeros((h, w), np.uint8)
            _DRAW[name](rng, m, gx, gy, size, int(rng.choice([-1, 1])))
            if int(m.sum()) < cfg.min_visible * 2:
                continue
            trial = [*placed, _Placed(gy, kind, m.astype(bool), size)]
            if all(v >= 0.5 * p.mask.sum() for p, v in zip(trial, _visible(trial))):
                placed = trial
                break
    return sorted(placed, key=lambda p: p.gy)


def _paint_clutter(crng: np.random.Generator, img: np.ndarray, cfg: PhotoConfig,
                   looks: list[_Look], ground_top: float, light: tuple[float, float],
                   depth_scale: Callable[[float], float]) -> None:
    """Paint stones, leaves and stains (no class) into ``img`` ``(h, w, 3)``, mostly on the
    ground, in a colour of one of the image's stuff looks, shaded, some with a highlight."""
    h, w = cfg.height, cfg.width
    n = int(crng.integers(cfg.clutter // 3, cfg.clutter + 1)) if cfg.clutter else 0
    for _ in range(n):
        cy = crng.uniform(ground_top + 0.05 * (h - ground_top), h) if crng.random() < 0.8 \
            else crng.uniform(0, h)
        cx = crng.uniform(0, w)
        r = crng.uniform(0.012, 0.045) * h * depth_scale(cy)
        m = _blob(crng, h, w, cx, cy, r)
        if m.sum() < 3:
            continue
        src = looks[int(crng.integers(len(looks)))]
        colour = src.colours[int(crng.integers(len(src.colours)))] * crng.uniform(0.6, 1.3)
        ys, xs, shade = _shade(m, light, 0.3)
        img[ys, xs] = colour[None] * shade[:, None]
        if crng.random() < 0.3:
            spot = _highlight(m, light, max(0.8, 0.3 * r))
            img[ys, xs] += (crng.uniform(40, 120) * spot)[:, None]


def _surface(rng: np.random.Generator, cfg: PhotoConfig, m: np.ndarray, lab: np.ndarray,
             looks: dict[int, _Look], region_mean: dict[int, np.ndarray], horizon: float
             ) -> tuple[str, int | None, np.ndarray, float]:
    """Pick a thing's material: ``(material, layout index of the stuff it copies or None,
    (h, w, 3) surface colours, shading strength)``."""
    h, w = m.shape
    present = sorted(looks)
    u = rng.random()
    if u < cfg.camouflage:  # mostly the look of the region the thing stands in
        j = int(np.bincount(lab[m]).argmax()) if rng.random() < 0.6 \
            else present[int(rng.integers(len(present)))]
        # an upright object catches more or less light than flat ground: 8-20% off
        exposure = 1 + rng.choice([-1, 1]) * rng.uniform(0.08, 0.2)
        return "camouflage", j, looks[j].render(rng, h, w, horizon) * exposure, 0.22
    if u < cfg.camouflage + cfg.silhouette:
        tone = (rng.uniform(15, 60) + rng.normal(0, 6, 3)).astype(np.float32)
        grain = rng.normal(0, 3, (h, w, 1)).astype(np.float32)
        return "silhouette", None, tone[None, None] + grain, 0.1
    j = present[int(rng.integers(len(present)))]
    colour = (region_mean[j] + rng.normal(0, 10, 3)).astype(np.float32)
    return "glossy", j, np.broadcast_to(colour, (h, w, 3)), 0.35


def _camera(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """White balance, vignetting, blur and sensor noise: ``(h, w, 3)`` float -> uint8."""
    h, w = img.shape[:2]
    img = img * rng.uniform(0.93, 1.07, 3).astype(np.float32)[None, None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    img *= (1 - rng.uniform(0.05, 0.2) * r2 / 2)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.8))
    img += rng.normal(0, rng.uniform(3, 6), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def render_scene(seed: int, split: int, index: int, cfg: PhotoConfig = PhotoConfig()
                 ) -> PhotoScene:
    """Draw one image, its panoptic ground truth and how each thing was drawn."""
    rng = np.random.default_rng([seed, split, index, _STYLE_SALT])
    h, w = cfg.height, cfg.width
    nt = len(cfg.things)
    # stuff: 2-4 classes laid out as a view
    k = int(rng.integers(2, min(4, len(cfg.stuff)) + 1))
    stuff_kinds = [int(i) for i in rng.choice(len(cfg.stuff), size=k, replace=False)]
    lab, horizon = _layout(rng, [cfg.stuff[i] for i in stuff_kinds], h, w)
    present = sorted(set(np.unique(lab).tolist()))
    looks = {j: _look(rng, cfg.stuff[stuff_kinds[j]]) for j in present}
    img = np.zeros((h, w, 3), np.float32)
    for j in present:
        region = lab == j
        img[region] = looks[j].render(rng, h, w, horizon)[region]
    region_mean = {j: img[lab == j].mean(0) for j in present}
    la = rng.uniform(-0.85, 0.85) * np.pi / 2 - np.pi / 2  # light from above, left or right
    light = (math.cos(la), math.sin(la))  # towards the light; y < 0 is up
    ground_top = max(horizon, 0.0)

    def depth_scale(y: float) -> float:
        """Perspective: nearer (lower) things are larger."""
        return float(np.clip(0.55 + 0.9 * (y - ground_top) / max(h - ground_top, 1.0),
                             0.5, 1.45))

    # clutter comes from its own RNG: the rest of the image does not depend on how much
    # there is (its pixels stay the stuff region's in the ground truth)
    _paint_clutter(np.random.default_rng([seed, split, index, _STYLE_SALT, 1]), img, cfg,
                   [looks[j] for j in present], ground_top, light, depth_scale)
    placed = _place_things(rng, cfg, ground_top, depth_scale)
    for p in placed:  # shadows fall on the ground, under every thing
        img *= (1 - 0.45 * np.clip(_shadow(p.mask, p.gy, light, p.size), 0, 1))[..., None]
    owner = np.full((h, w), -1, np.int64)
    drawn: list[tuple[str, int | None]] = []
    for i, p in enumerate(placed):  # far to near: nearer things occlude farther ones
        material, src, surface, strength = _surface(rng, cfg, p.mask, lab, looks, region_mean,
                                                    horizon)
        ys, xs, shade = _shade(p.mask, light, strength)
        img[ys, xs] = np.clip(surface[ys, xs] * shade[:, None], 0, 255)
        peak = rng.uniform(110, 190) if material == "glossy" else rng.uniform(15, 45)
        img[ys, xs] += (peak * _highlight(p.mask, light, max(1.0, 0.06 * p.size)))[:, None]
        owner[p.mask] = i
        drawn.append((material, src))
    image = _camera(rng, img)
    # panoptic ground truth: one segment per stuff class, one per visible thing
    ids = np.zeros((h, w), np.int64)
    segments: list[dict[str, Any]] = []
    for j in present:
        region = (lab == j) & (owner < 0)
        if region.any():
            ids[region] = len(segments) + 1
            segments.append({"id": len(segments) + 1,
                             "category_id": nt + stuff_kinds[j] + 1, "iscrowd": 0})
    infos = []
    for i, (p, (material, src)) in enumerate(zip(placed, drawn)):
        vis = owner == i
        sid = 0
        if vis.sum() >= cfg.min_visible:  # smaller parts stay void
            sid = len(segments) + 1
            ids[vis] = sid
            segments.append({"id": sid, "category_id": p.kind + 1, "iscrowd": 0})
        infos.append(ThingInfo(p.kind + 1, sid, int(p.mask.sum()), material,
                               None if src is None else nt + stuff_kinds[src] + 1))
    return PhotoScene(image, PanopticSeg(ids, segments).with_stats(), tuple(infos))


def render_photo(seed: int, split: int, index: int, cfg: PhotoConfig = PhotoConfig()
                 ) -> tuple[np.ndarray, PanopticSeg]:
    """Draw one image: ``(H, W, 3)`` uint8 RGB and its panoptic segmentation (segment ids
    1..N, category ids of :func:`photo_categories`)."""
    scene = render_scene(seed, split, index, cfg)
    return scene.image, scene.seg
