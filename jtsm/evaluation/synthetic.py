"""Random COCO panoptic ground truth and perturbed predictions, for tests and benchmarks.

The prediction is derived from the ground truth by the mistakes real models make: shifted
segments, dropped segments, merged segments, wrong categories, false positives and void holes.
The ground truth has void regions and crowd segments. Ids are random in ``[1, 2^24)`` so all three
PNG channels are exercised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jtsm.data.coco_panoptic import id2rgb

__all__ = ["make_categories", "random_pair", "write_pair_dataset"]


def make_categories(num_things: int = 6, num_stuff: int = 4) -> list[dict[str, Any]]:
    """COCO panoptic categories with sparse ids (things first in id order, stuff after)."""
    cats = [{"id": 3 * i + 1, "name": f"thing{i}", "isthing": 1} for i in range(num_things)]
    cats += [{"id": 100 + 2 * i, "name": f"stuff{i}", "isthing": 0} for i in range(num_stuff)]
    return cats


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random rectangle or ellipse."""
    m = np.zeros((h, w), np.uint8)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    ry = int(rng.integers(2, max(3, h // 3)))
    rx = int(rng.integers(2, max(3, w // 3)))
    if rng.random() < 0.5:
        m[max(0, cy - ry) : cy + ry, max(0, cx - rx) : cx + rx] = 1
    else:
        cv2.ellipse(m, (cx, cy), (rx, ry), float(rng.integers(0, 180)), 0, 360, 1, -1)
    return m.astype(bool)


def _new_ids(rng: np.random.Generator, n: int) -> list[int]:
    ids: set[int] = set()
    while len(ids) < n:
        ids.add(int(rng.integers(1, 1 << 24)))
    return [int(i) for i in rng.permutation(sorted(ids))]


def random_pair(
    rng: np.random.Generator,
    categories: list[dict[str, Any]],
    height: int,
    width: int,
    num_segments: int = 10,
) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray, list[dict[str, Any]]]:
    """One image: ``(gt_ids, gt_segments, pred_ids, pred_segments)`` (segments without area)."""
    things = [c["id"] for c in categories if c.get("isthing", 1)]
    stuff = [c["id"] for c in categories if not c.get("isthing", 1)]
    all_ids = things + stuff
    # Ground truth: stuff first (large), things over it, then void holes.
    gt_ids = np.zeros((height, width), np.int64)
    n_stuff = int(rng.integers(0, min(len(stuff), 3) + 1))
    n_things = max(1, num_segments - n_stuff)
    ids = _new_ids(rng, n_stuff + n_things)
    segs: list[dict[str, Any]] = []
    for k, cid in enumerate(rng.permutation(stuff)[:n_stuff]):
        m = _shape_mask(rng, height, width) | _shape_mask(rng, height, width)
        gt_ids[m] = ids[k]
        segs.append({"id": ids[k], "category_id": int(cid), "iscrowd": 0})
    for k in range(n_stuff, n_stuff + n_things):
        cid = int(rng.choice(things))
        gt_ids[_shape_mask(rng, height, width)] = ids[k]
        segs.append({"id": ids[k], "category_id": cid, "iscrowd": int(rng.random() < 0.15)})
    for _ in range(int(rng.integers(0, 3))):
        gt_ids[_shape_mask(rng, height, width)] = 0
    present = set(np.unique(gt_ids).tolist())
    segs = [s for s in segs if s["id"] in present]

    # Prediction: each gt segment, perturbed, painted in random order.
    pred_ids = np.zeros_like(gt_ids)
    pids = _new_ids(rng, len(segs) + 8)
    psegs: list[dict[str, Any]] = []
    last_of_cat: dict[int, int] = {}
    for k in rng.permutation(len(segs)):
        s = segs[k]
        r = rng.random()
        if r < 0.1:
            continue  # dropped
        m = gt_ids == s["id"]
        if rng.random() < 0.5:  # shifted
            dy, dx = (int(v) for v in rng.integers(-height // 6, height // 6 + 1, size=2))
            m = np.roll(m, (dy, dx), axis=(0, 1))
        cid = s["category_id"]
        if rng.random() < 0.1:
            cid = int(rng.choice(all_ids))  # relabelled
        if cid in last_of_cat and rng.random() < 0.3:
            pred_ids[m] = last_of_cat[cid]  # merged with the previous segment of its class
            continue
        pid = pids.pop()
        pred_ids[m] = pid
        last_of_cat[cid] = pid
        psegs.append({"id": pid, "category_id": cid, "iscrowd": 0})
    for _ in range(int(rng.integers(0, 3))):  # false positives
        pid = pids.pop()
        pred_ids[_shape_mask(rng, height, width)] = pid
        psegs.append({"id": pid, "category_id": int(rng.choice(all_ids)), "iscrowd": 0})
    for _ in range(int(rng.integers(0, 2))):  # void holes
        pred_ids[_shape_mask(rng, height, width)] = 0
    present = set(np.unique(pred_ids).tolist())
    psegs = [s for s in psegs if s["id"] in present]
    return gt_ids, segs, pred_ids, psegs


def _with_stats(ids: np.ndarray, segs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in segs:
        ys, xs = np.nonzero(ids == s["id"])
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]
        out.append({**s, "area": int(len(ys)), "bbox": bbox})
    return out


def write_pair_dataset(
    root: str | os.PathLike[str],
    num_images: int,
    height: int,
    width: int,
    seed: int = 0,
    num_segments: int = 10,
    categories: list[dict[str, Any]] | None = None,
) -> tuple[Path, Path]:
    """Write ``root/gt.json`` + ``root/gt/`` and ``root/pred.json`` + ``root/pred/``.

    Returns:
        The gt json and the prediction json paths (PNG folders beside them, COCO style).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    cats = categories or make_categories()
    images, gt_anns, pred_anns = [], [], []
    for d in ("gt", "pred"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(num_images):
        gt_ids, gsegs, pred_ids, psegs = random_pair(rng, cats, height, width, num_segments)
        name = f"{i:06d}.png"
        images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "height": height, "width": width})
        for d, ids, segs, anns in (("gt", gt_ids, gsegs, gt_anns), ("pred", pred_ids, psegs,
                                                                     pred_anns)):
            cv2.imwrite(str(root / d / name), cv2.cvtColor(id2rgb(ids), cv2.COLOR_RGB2BGR))
            anns.append({"image_id": i + 1, "file_name": name,
                         "segments_info": _with_stats(ids, segs)})
    for d, anns in (("gt", gt_anns), ("pred", pred_anns)):
        with open(root / f"{d}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return root / "gt.json", root / "pred.json"
