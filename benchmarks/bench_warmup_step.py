"""Benchmark: one tag warm-up step of the tiny backbone by width, and two ways to run it faster.

A step as ``jtsm mine``'s warm-up takes it (the CPU preset: 2 items of 8 images, gradients
accumulated): ``(B, 3, S, S)`` images through the backbone at stride 16, max + mean pooling, a
linear tag classifier, BCE, backward, AdamW. Inputs are random (compute does not depend on the
pixels). Printed: the median of ``--steps`` steps (after one untimed) per configuration, and
each one's ratio to the default (width 32, contiguous, eager), all measured in this run:

- ``--widths``: ``backbone.width`` values (compute grows as the width's square);
- channels-last memory format at width 32;
- ``torch.compile`` at width 32 (``--compile``; its first step, the compilation, is printed
  apart and not in the median);
- bfloat16 autocast at width 32 (``--bf16``: ``backbone.precision=bf16``, the convolutions in
  bf16 as ``torch.autocast("cpu")`` runs them; fast where the CPU has AMX, which ``auto`` checks:
  :mod:`jtsm.modeling.precision`).

    python benchmarks/bench_warmup_step.py [--batch 16] [--items 2] [--size 128] \
        [--steps 15] [--threads 2] [--widths 16 24] [--compile] [--bf16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from jtsm.config import load_config
from jtsm.engine.mine import TagWarmupModule
from jtsm.modeling.model import MiningModel
from jtsm.modeling.precision import bf16_supported


class _Step:
    """``jtsm mine``'s warm-up module (backbone, tag classifier, BCE) and an AdamW optimiser."""

    def __init__(self, width: int, classes: int, channels_last: bool, compiled: bool,
                 items: int, bf16: bool = False) -> None:
        torch.manual_seed(0)
        self.items = items
        cfg = load_config(overrides=["backbone.norm=bn", "backbone.stride=16",
                                     f"backbone.width={width}",
                                     f"backbone.precision={'bf16' if bf16 else 'fp32'}"])
        model = MiningModel.from_config(cfg, classes)
        self.module = TagWarmupModule(model)
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        if compiled:
            self.module.backbone = torch.compile(self.module.backbone)
        self.channels_last = channels_last
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=1e-3)

    def __call__(self, images: torch.Tensor, tags: torch.Tensor) -> float:
        """One step on ``images (B, 3, S, S)`` in 0..255, ``tags (B, C)``; returns its seconds."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        t = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        for im, tg in zip(images.chunk(self.items), tags.chunk(self.items)):
            # gradient accumulation over the step's items, as the trainer (BN per item)
            loss = self.module((im, tg))["loss_tags"]
            (loss / self.items).backward()
        self.opt.step()
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="images per step (all items)")
    ap.add_argument("--items", type=int, default=2, help="forward passes per step (BN over "
                    "batch / items images each), as tag_warmup.items")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32])
    ap.add_argument("--compile", action="store_true", help="also time torch.compile")
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=g) * 255
    tags = (torch.rand(args.batch, args.classes, generator=g) < 0.4).float()

    widths = sorted(set(args.widths) | {32})  # 32, the default, is what the ratios are to
    runs: list[tuple[str, int, bool, bool, bool]] = [(f"width {w}", w, False, False, False)
                                                      for w in widths]
    runs.append(("width 32, channels-last", 32, True, False, False))
    if args.compile:
        runs.append(("width 32, torch.compile", 32, False, True, False))
    if args.bf16:
        runs.append(("width 32, bf16 autocast", 32, False, False, True))
    print(f"# tag warm-up step: {args.batch} images of {args.size} px, stride 16, "
          f"{args.threads} threads, torch {torch.__version__}; backbone.precision=auto here "
          f"means {'bf16' if bf16_supported('cpu') else 'fp32'}")
    medians: dict[str, float] = {}
    for name, width, cl, comp, bf16 in runs:
        step = _Step(width, args.classes, cl, comp, args.items, bf16)
        first = step(images, tags)
        medians[name] = statistics.median(step(images, tags) for _ in range(args.steps))
        extra = f"  (first step {first:.1f} s: compilation)" if comp else ""
        print(f"{name:26s} {medians[name]:.3f} s{extra}")
    base = medians["width 32"]
    print("# ratio to width 32 (eager, contiguous); < 1 is faster")
    for name, sec in medians.items():
        print(f"{name:26s} {sec / base:.2f}")


if __name__ == "__main__":
    main()
