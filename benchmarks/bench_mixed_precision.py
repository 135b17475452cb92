"""Benchmark: a ``jtsm mine`` training step in float32, in bf16 with only the backbone in bf16,
and in bf16 throughout (the mining head's FC layers too), timed in pairs.

The three variants are built with the same weights and alternate step by step over the same
items, so a machine shared with other work slows them alike; the figures are medians of the
per-step ratios to the float32 step. ``bf16-backbone`` is what ``backbone.precision = bf16``
ran before the mining head joined the autocast: the head's FCs in float32 and torchvision's
``FrozenBatchNorm2d``, which returns float32 after each bf16 convolution. The items are those of
``benchmarks/bench_train_throughput.py`` (a photo, realistic proposals); each step draws its
short side from ``--scales`` and its proposal count from ``--proposals`` / 2 .. ``--proposals``,
as training sees them (oneDNN builds a bf16 kernel per new shape on a CPU: ``--skip`` leaves the
first steps out of the medians). On CUDA each step runs with the backends ``jtsm mine`` sets for
its precision (TF32 for ``fp32``: :func:`jtsm.engine.device.training_backends`).

    python benchmarks/bench_mixed_precision.py --preset voc --fc-dim 4096 --proposals 500
    python benchmarks/bench_mixed_precision.py --preset synth --scales 112,128,144 \
        --proposals 300 --steps 300 --skip 150
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision
from bench_train_throughput import VOC, _step, voc_item  # benchmarks/ (on sys.path)

from jtsm.config import load_config
from jtsm.engine.device import training_backends
from jtsm.engine.mine import MilTrainModule
from jtsm.modeling.backbone import FrozenBatchNorm2d
from jtsm.modeling.build import build_model

VARIANTS = ("fp32", "bf16-backbone", "bf16")


def build(variant: str, preset: str, sets: list[str], device: str
          ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The MIL training module of ``variant`` (same seed, so the same weights) and its SGD."""
    torch.manual_seed(0)
    precision = "fp32" if variant == "fp32" else "bf16"
    cfg = load_config(preset, [*sets, f"backbone.precision={precision}"])
    model = build_model(cfg, VOC, "mine", device)
    if variant == "bf16-backbone":  # the head outside autocast, torchvision's frozen BN
        model.mine = lambda feats, props, m=model: m.head(m.pooler(feats, props), "fp32")
        for norm in model.backbone.modules():
            if isinstance(norm, FrozenBatchNorm2d):
                norm.forward = torchvision.ops.FrozenBatchNorm2d.forward.__get__(norm)
    module = MilTrainModule.from_config(model, cfg).train()
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3,
                          momentum=0.9)
    return module, opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="voc", help="voc (ResNet18-WS) or synth (tiny)")
    ap.add_argument("--fc-dim", type=int, default=0, help="mining.fc_dim (default: preset's)")
    ap.add_argument("--proposals", type=int, default=500, help="most proposals per image")
    ap.add_argument("--scales", default="480", help="short sides to draw from")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--skip", type=int, default=1, help="first steps left out of the medians")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    sets = [f"input.max_proposals={args.proposals}"]
    sets += ["backbone.name=resnet18-ws"] if args.preset == "voc" else []
    sets += [f"mining.fc_dim={args.fc_dim}"] if args.fc_dim else []
    runs = {v: build(v, args.preset, sets, args.device) for v in VARIANTS}
    rng = np.random.default_rng(0)
    scales = [int(s) for s in args.scales.split(",")]
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cuda = args.device.startswith("cuda")
    for i in range(args.steps + args.skip):
        item = voc_item(i, int(rng.choice(scales)),
                        int(rng.integers(args.proposals // 2, args.proposals + 1)), False)
        for v, (module, opt) in runs.items():
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with training_backends(torch.device(args.device), "fp32" if v == "fp32" else "bf16"):
                _step(module, opt, item)
                if cuda:
                    torch.cuda.synchronize()
            if i >= args.skip:
                times[v].append(time.perf_counter() - t0)
    fc = runs["fp32"][0].model.head.fc[0]
    print(f"{args.preset}, FC {fc.in_features}x{fc.out_features}, {args.proposals // 2}-"
          f"{args.proposals} proposals, short sides {args.scales}, {args.steps} steps after "
          f"{args.skip}, {args.device}, {torch.get_num_threads()} thread(s)")
    for v in VARIANTS:
        ratio = statistics.median(b / a for a, b in zip(times["fp32"], times[v]))
        print(f"  {v:13} {statistics.median(times[v]):.3f} s/step, {ratio:.2f}x fp32's")


if __name__ == "__main__":
    main()
