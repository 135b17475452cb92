"""Benchmark: a MIL training step and the scoring of an image, C kernel vs torch path.

The CPU preset (``cpu``: tiny backbone at stride 8, MoIPool 7x7, FC 256, 4 refinement heads,
300 proposals) on generated data like the demo's (128 px, selective search), in one process:
each measurement alternates ``JTSM_BINNEDMAX=1`` (``jtsm.ops._binnedmax``) and ``=0`` (the
torch path of ``jtsm.ops.binned_max``) over the same items, and prints the best of
``--repeat`` passes and the ratio. Items are loaded before timing, so data loading is not in
the figures. A last line times the MIL step with ``mining.train_backbone=false``.

    python benchmarks/bench_mil_step.py [--images 20] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from synthdata import synth_with_proposals  # benchmarks/synthdata.py (on sys.path)

from jtsm.config import load_config
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import MiningDataset
from jtsm.engine.inference import score_proposals
from jtsm.engine.mine import MilTrainModule
from jtsm.modeling.build import build_model
from jtsm.ops.binned_max import kernel_available


def _best(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not kernel_available():
        raise SystemExit("jtsm.ops._binnedmax is not built (or JTSM_BINNEDMAX=0): "
                         "nothing to compare")
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="jtsm_bench_mil_"))
    synth_with_proposals(tmp, args.images)
    ann = tmp / "data/annotations/panoptic_train.json"
    cfg = load_config("synth")
    ds = MiningDataset(read_image_labels(ann), tmp / "data/images", tmp / "props", cfg.input)
    torch.manual_seed(0)
    model = build_model(cfg, ds.categories)
    wrapper = MilTrainModule(model, freeze_norm=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    items = [ds.load(i, np.random.default_rng(i)) for i in range(len(ds))]
    raw = [ds.read(i) for i in range(len(ds))]

    def train_pass() -> None:
        wrapper.train()
        for it in items:
            loss = sum(wrapper(it).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

    def score_pass() -> None:
        for image, ps in raw:
            score_proposals(model, image, ps, cfg.input.test_scales, cfg.input.max_size)

    print(f"# {len(items)} images 128 px, cpu preset, {cfg.input.max_proposals} proposals max, "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"{'per image':<22}{'kernel ms':>11}{'torch ms':>10}{'torch / kernel':>16}")
    for name, fn in (("MIL training step", train_pass), ("scoring (inference)", score_pass)):
        res = {}
        for env in ("1", "0"):
            os.environ["JTSM_BINNEDMAX"] = env
            res[env] = _best(fn, args.repeat) / len(items)
        os.environ.pop("JTSM_BINNEDMAX")
        print(f"{name:<22}{1e3 * res['1']:>11.1f}{1e3 * res['0']:>10.1f}"
              f"{res['0'] / res['1']:>15.2f}x")
    # mining.train_backbone=false: the head alone learns (kernel path)
    frozen = MilTrainModule(model, freeze_norm=True, train_backbone=False)
    head = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(head, 1e-4)
    wrapper = frozen
    t = _best(train_pass, args.repeat) / len(items)
    print(f"{'MIL step, frozen backbone':<22}{1e3 * t:>11.1f}  (mining.train_backbone=false)")


if __name__ == "__main__":
    main()
