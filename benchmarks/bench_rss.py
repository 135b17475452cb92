"""Resident memory of ``jtsm proposals`` and ``jtsm predict`` over a few hundred images.

Generates a synthetic dataset (``--images`` val images of ``--size`` px, plus 8 training images)
in a temporary folder, then in this one process (one worker, so the figures are this process's):

1. makes proposals for every val image (``run_proposals``, ``--method``, default felzenszwalb);
2. trains a tiny mining run on the 8 training images (4 iterations; only the weights matter);
3. predicts every val image with it from the stored proposals (``predict_images``).

After every ``--every`` images it prints the RSS (``VmRSS`` of ``/proc/self/status``); at the end,
the growth from the first to the last figure of each stage. Flat means the growth is a small
fraction of the first figure and does not scale with the image count.

    python benchmarks/bench_rss.py                       # 300 images of 128x128, ~1 minute
    python benchmarks/bench_rss.py --images 500 --size 160 160
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = ["solver.max_iter=4", "solver.ims_per_batch=1", "solver.warmup_iters=1",
        "solver.steps=[3]", "mining.fc_dim=32", "mining.oicr_heads=2",
        "input.train_scales=[96]", "input.test_scales=[128]", "input.max_proposals=200",
        "proposals=felzenszwalb"]


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


class Meter:
    """Prints the RSS every ``every`` images of a stage and keeps the figures."""

    def __init__(self, stage: str, every: int) -> None:
        self.stage, self.every, self.n = stage, every, 0
        self.figures: list[tuple[int, float]] = []
        self.t0 = time.perf_counter()

    def tick(self) -> None:
        self.n += 1
        if self.n % self.every == 0:
            mb = rss_mb()
            self.figures.append((self.n, mb))
            print(f"{self.stage:9s} {self.n:5d} images  RSS {mb:7.1f} MiB  "
                  f"({time.perf_counter() - self.t0:5.1f} s)", flush=True)

    def wrap(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield item
            self.tick()

    def growth(self) -> str:
        if len(self.figures) < 2:
            return f"{self.stage}: too few images for a growth figure"
        (n0, a), (n1, b) = self.figures[0], self.figures[-1]
        return (f"{self.stage}: {a:.1f} MiB after {n0} images -> {b:.1f} MiB after {n1}: "
                f"{b - a:+.1f} MiB ({100 * (b - a) / a:+.1f}%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--method", default="felzenszwalb")
    args = ap.parse_args()

    import torch

    from jtsm.config import load_config
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.engine.mine import run_mine
    from jtsm.engine.predict import predict_images
    from jtsm.engine.runs import load_run
    from jtsm.proposals.runner import list_images, run_proposals

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="jtsm-bench-rss-") as tmp:
        root = Path(tmp)
        h, w = args.size
        write_synth_dataset(root / "d", 8, args.images, SynthConfig(height=h, width=w), seed=0)
        images = root / "d" / "images"
        val = root / "d" / "annotations" / "panoptic_val.json"
        train = root / "d" / "annotations" / "panoptic_train.json"
        print(f"{args.images} images of {h}x{w}, proposals: {args.method}; "
              f"RSS at start {rss_mb():.1f} MiB", flush=True)

        props = Meter("proposals", args.every)
        items = list_images(images, val) + list_images(images, train)
        for _ in props.wrap(run_proposals(items[: args.images], root / "props", args.method,
                                          max_proposals=300, workers=1)):
            pass
        list(run_proposals(items[args.images:], root / "props", args.method,
                           max_proposals=300, workers=1))

        run_mine(load_config(overrides=TINY), train, images, root / "props", root / "run",
                 write_outputs=False)
        run = load_run(root / "run")
        pred = Meter("predict", args.every)
        predict_images(run, images, root / "pred", val, root / "props",
                       progress=lambda it, n, label: pred.wrap(it))
        print(props.growth())
        print(pred.growth())


if __name__ == "__main__":
    main()
