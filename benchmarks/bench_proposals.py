"""Seconds per image: jtsm selective search (masks kept) vs OpenCV's (boxes only), same run.

Both single-threaded, on skimage's photos resized to a 500 px long side. jtsm's ``fast`` mode
(the paper's fast set: HSV, Lab; k 50, 100; C+T+S+F, T+S+F = 8 hierarchies) is compared with
OpenCV's ``switchToSelectiveSearchFast`` (HSV, Lab; k 150, 300, 450; 2 strategies = 12
hierarchies, boxes only). Prints a table and the ratio jtsm / OpenCV (target: <= 1.5).

    .venv/bin/python benchmarks/bench_proposals.py [--side 500] [--repeat 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402
from timing import best_of  # noqa: E402  (benchmarks/timing.py)

from jtsm.proposals.selective_search import selective_search  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _photo(name: str, side: int) -> np.ndarray:
    im = getattr(data, name)()
    s = side / max(im.shape[:2])
    return cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)


def _opencv(rgb: np.ndarray) -> np.ndarray:
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(rgb[:, :, ::-1]))
    ss.switchToSelectiveSearchFast()
    return ss.process()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max", type=int, default=2000, help="jtsm proposals kept")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    print(f"image size: long side {args.side} px; best of {args.repeat}; single thread")
    print(f"{'image':<10} {'HxW':>9} {'opencv s':>9} {'boxes':>6} {'jtsm s':>8} {'masks':>6} "
          f"{'ratio':>6}")
    tot_cv = tot_us = 0.0
    for name in PHOTOS:
        im = _photo(name, args.side)
        t_cv, boxes = best_of(lambda im=im: _opencv(im), args.repeat)
        t_us, ps = best_of(lambda im=im: selective_search(im, "fast", args.max), args.repeat)
        tot_cv += t_cv
        tot_us += t_us
        h, w = im.shape[:2]
        print(f"{name:<10} {h:>4}x{w:<4} {t_cv:>9.3f} {len(boxes):>6} {t_us:>8.3f} "
              f"{len(ps):>6} {t_us / t_cv:>6.2f}")
    print(f"{'total':<10} {'':>9} {tot_cv:>9.3f} {'':>6} {tot_us:>8.3f} {'':>6} "
          f"{tot_us / tot_cv:>6.2f}")
    print(f"jtsm fast / OpenCV fast: {tot_us / tot_cv:.2f}x (target <= 1.5x), masks kept")


if __name__ == "__main__":
    main()
