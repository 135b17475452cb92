"""Outlines of a refined run's predictions: which superpixels to snap its masks to.

    python benchmarks/snap_superpixels.py --demo demo_out          # a `jtsm demo --out` folder

A refined run's instance masks (2S x 2S per box) and semantic probabilities (the feature
stride) are coarser than the image; ``refine.snap = "superpixels"`` moves them onto the
proposals' superpixels. This predicts the demo's val split with the run's own setting, with no
snapping, and with finer Felzenszwalb maps in place of the store's, and prints mask PQ and
Boundary PQ (all / things / stuff) for each, so the outline quality of each choice is measured
by the metric made for it (``jtsm eval --metric boundary``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", required=True, type=Path, help="a `jtsm demo --out` folder")
    ap.add_argument("--out", type=Path, default=None, help="predictions (default: DEMO/snap)")
    args = ap.parse_args(argv)

    from skimage.segmentation import felzenszwalb

    import jtsm.engine.panoptic_inference as pi
    import jtsm.engine.segment as segment
    from jtsm.engine.predict import predict_images
    from jtsm.engine.runs import load_run
    from jtsm.evaluation.boundary import evaluate_boundary_pq
    from jtsm.evaluation.panoptic import evaluate_pq
    from jtsm.ops.superpixels import snap_to_superpixels, superpixel_means

    d, out = args.demo, args.out or args.demo / "snap"
    gt = d / "data/annotations/panoptic_val.json"
    current: dict[str, Any] = {"opts": None, "map": None}
    refined = pi.refined_panoptic

    def with_map(model: Any, image: np.ndarray, ps: Any, *a: Any, **k: Any) -> Any:
        opts = current["opts"]
        current["map"] = felzenszwalb(image, **opts) if opts else None
        return refined(model, image, ps, *a, **k)

    def own(sp: np.ndarray) -> np.ndarray:
        return current["map"] if current["map"] is not None else sp

    # the snapping functions the refined predictions call, given the chosen map
    pi.snap_to_superpixels = lambda p, sp, t=0.5: snap_to_superpixels(p, own(sp), t)
    pi.superpixel_means = lambda m, sp: superpixel_means(m, own(sp))
    segment.refined_panoptic = with_map

    def row(r: dict[str, Any]) -> str:
        return " / ".join(f"{100 * r[k]['pq']:.1f}" for k in ("All", "Things", "Stuff"))

    print("| snapping | PQ (all / things / stuff) | Boundary PQ (all / things / stuff) |")
    print("| --- | --- | --- |")
    settings = [("none", "none", None), ("the proposals' superpixels", "superpixels", None)]
    settings += [(f"Felzenszwalb scale {s}", "superpixels",
                  {"scale": s, "sigma": 0.8 if s >= 100 else 0.5, "min_size": m})
                 for s, m in ((100, 20), (50, 10), (25, 5))]
    for name, snap, opts in settings:
        current["opts"] = opts
        run = load_run(d / "refine")
        run.config.refine.snap = snap
        pred = out / name.replace(" ", "_").replace("'", "")
        predict_images(run, d / "data/images", pred, gt, d / "proposals", overwrite=True)
        print(f"| {name} | {row(evaluate_pq(gt, pred / 'panoptic.json'))} | "
              f"{row(evaluate_boundary_pq(gt, pred / 'panoptic.json'))} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
