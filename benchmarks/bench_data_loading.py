"""Benchmark: a training step's data loading, from the files each time, from the in-memory
cache, and loaded ahead on a thread.

``jtsm mine`` and ``jtsm refine`` load each step's images and proposals (file read, PNG/JPEG
decode, the proposal file's arrays, then resize, flip and jitter) in the loop before the step
runs. Two ways to take that off the step, neither of which changes the items (tested):

- ``input.cache_mb`` keeps decoded images and selected proposals in memory, so only the first
  epoch reads files (the timed steps here run after a pass that fills the cache, as every
  epoch after the first of a run does);
- ``solver.load_threads`` loads the next items on threads while the model computes.

Prints, in one run: the milliseconds to load a MIL item and a warm-up image from the files and
from the cache; then the CPU preset's tag warm-up steps (16 images) and MIL steps (one image,
300 proposals) of :func:`jtsm.engine.trainer.train` under three settings, taking turns for
``--rounds`` rounds, as the median seconds per step (the loop's own clock, data loading
included) and the ratio to loading from the files in the loop (what the code did before, but
for the jitter's 256-level table, which both settings use):

    python benchmarks/bench_data_loading.py [--data D --proposals P] [--steps 30] [--rounds 3]

Without ``--data`` it writes 64 synthetic 128 px images and their selective-search proposals to
a temporary folder first.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from synthdata import synth_with_proposals  # benchmarks/synthdata.py (on sys.path)

from jtsm.config import load_config
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import MiningDataset, TagBatchDataset
from jtsm.engine.mine import (
    MilTrainModule,
    TagWarmupModule,
    warmup_solver,
    warmup_stride,
)
from jtsm.engine.trainer import train
from jtsm.modeling.build import build_model

SETTINGS = (("files each time, in the loop", 0.0, 0), ("cache, in the loop", 1024.0, 0),
            ("cache, 1 loader thread", 1024.0, 1))


def _step_seconds(module: torch.nn.Module, task: object, solver: object) -> list[float]:
    """Seconds of each step after the first two (the loop's own per-step clock)."""
    seconds: list[float] = []
    train(module, task, solver, seed=0, run_dir=None,  # type: ignore[arg-type]
          on_log=lambda rec: seconds.append(rec["seconds"]), find_unused=True)
    return seconds[2:]


def _load_ms(load: Callable[[int], object], n: int) -> float:
    """Milliseconds per call of ``load(i)`` over ``i < n``."""
    t = time.perf_counter()
    for i in range(n):
        load(i)
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a jtsm data folder (annotations/, images/)")
    ap.add_argument("--proposals", type=Path)
    ap.add_argument("--steps", type=int, default=30, help="steps per setting and round")
    ap.add_argument("--rounds", type=int, default=3, help="the settings take turns this often")
    ap.add_argument("--torch-threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    warm_name, mil_name = "tag warm-up step (16 images)", "MIL step (1 image, 300 proposals)"
    steps: dict[str, dict[str, list[float]]] = {warm_name: {}, mil_name: {}}
    with tempfile.TemporaryDirectory() as tmp:
        data, props = (args.data, args.proposals) if args.data else \
            synth_with_proposals(Path(tmp), 64)
        base = load_config("synth")
        labels = read_image_labels(data / "annotations/panoptic_train.json")
        sets = {name: MiningDataset(labels, data / "images", props,
                                    replace(base.input, cache_mb=mb))
                for name, mb, _ in SETTINGS}
        files, cached = sets[SETTINGS[0][0]], sets[SETTINGS[1][0]]
        n = len(files)
        for i in range(n):  # the first epoch: fills the cache
            cached.read(i)
        rng = np.random.default_rng(0)
        print(f"# {n} images; torch {torch.__version__} on {args.torch_threads} threads")
        print("loading one item (ms), files each time / from the cache:")
        for name, fn in (("MIL item (image + 300 proposals, augmented)",
                          lambda d: (lambda i: d.load(i, rng))),
                         ("warm-up image (augmented)",
                          lambda d: (lambda i, t=TagBatchDataset(d, 2): t._image(i, 128, rng)))):
            a, b = _load_ms(fn(files), n), _load_ms(fn(cached), n)
            print(f"  {name:44s} {a:.2f} / {b:.2f}  ({b / a:.2f}x)")
        for _ in range(args.rounds):
            for name, _, threads in SETTINGS:
                ds = sets[name]
                model = build_model(base, ds.categories)
                wsolver = replace(warmup_solver(base), max_iter=args.steps + 2,
                                  load_threads=threads)
                with warmup_stride(model, base.tag_warmup.stride):
                    steps[warm_name].setdefault(name, []).extend(_step_seconds(
                        TagWarmupModule(model), TagBatchDataset(ds, base.tag_warmup.batch),
                        wsolver))
                msolver = replace(base.solver, max_iter=args.steps + 2, load_threads=threads)
                steps[mil_name].setdefault(name, []).extend(_step_seconds(
                    MilTrainModule(model, freeze_norm=True), ds, msolver))
    print(f"training step (s, median of {args.rounds} x {args.steps} steps, settings taking "
          "turns); ratio = step time / the first setting's:")
    for row, by in steps.items():
        first = statistics.median(by[SETTINGS[0][0]])
        print(f"  {row}")
        for name, secs in by.items():
            sec = statistics.median(secs)
            print(f"    {name:32s} {sec:.3f}  {sec / first:.2f}x")


if __name__ == "__main__":
    main()
