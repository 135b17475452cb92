"""Training throughput at the paper's VOC shapes: images/s and peak memory of ``mine`` and
``refine`` steps, on the CPU and (where there is one) a CUDA GPU, in the same run.

Each step is what ``jtsm mine`` / ``jtsm refine`` run per image: forward, the losses of
Eq. 2-4 (+ Eq. 9-10 for refine), backward and an SGD step, one image per step as the paper
(one image per GPU). Inputs are random (random weights, a random image, random proposals over
a grid of superpixels), sized as VOC training sees them: short side drawn from 480..1216
(step 32, aspect 4:3, long side capped at 2000), 2000 or 4000 proposals.

    python benchmarks/bench_train_throughput.py                  # CPU: a few steps
    python benchmarks/bench_train_throughput.py --device cuda --steps 20
    python benchmarks/bench_train_throughput.py --device cuda --device cpu --cpu-steps 2

Prints one line per (device, stage, backbone, proposals): images/s, seconds per image and
peak memory (CUDA: ``torch.cuda.max_memory_allocated`` of the step; CPU: the process's peak
RSS so far, an upper bound for the configurations after the first),
and for each configuration run on both devices the GPU/CPU speed ratio.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import scipy.sparse as sp
import torch

from jtsm.config import load_config
from jtsm.data.refine_dataset import RefineItem
from jtsm.engine.mine import MilTrainModule
from jtsm.engine.refine import RefineTrainModule
from jtsm.modeling.build import build_model
from jtsm.structures import CategoryMap, ProposalSet

SCALES = list(range(480, 1217, 32))
VOC = CategoryMap.from_coco([{"id": i + 1, "name": f"c{i}", "isthing": int(i < 20)}
                             for i in range(21)])


def random_item(rng: np.random.Generator, short: int, n_props: int, refine: bool
                ) -> RefineItem:
    """A VOC-shaped training item: ``(3, H, W)`` image, ``n_props`` proposals that are unions
    of 1-40 cells of a 24 px superpixel grid, two tags (+ pseudo labels for refine)."""
    h, w = short, min(int(short * 4 / 3), 2000)
    cell = 24
    gy, gx = (h + cell - 1) // cell, (w + cell - 1) // cell
    spx = (np.arange(h)[:, None] // cell) * gx + np.arange(w)[None, :] // cell
    s = gy * gx
    rows, cols = [], []
    for p in range(n_props):  # a random rectangle of cells: box-like, as real proposals
        y0, x0 = rng.integers(0, gy), rng.integers(0, gx)
        y1, x1 = min(gy, y0 + rng.integers(1, 8)), min(gx, x0 + rng.integers(1, 8))
        c = (np.arange(y0, y1)[:, None] * gx + np.arange(x0, x1)[None, :]).ravel()
        rows.append(np.full(c.size, p))
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    member = sp.csr_matrix((np.ones(r.size, bool), (r, c)), shape=(n_props, s))
    ps = ProposalSet(spx.astype(np.int32), member, rng.random(n_props).astype(np.float32))
    tags = torch.zeros(VOC.num_classes)
    tags[[3, 20]] = 1
    image = torch.from_numpy(rng.uniform(0, 255, (3, h, w)).astype(np.float32))
    item = RefineItem(image, tags, ps, 0)
    if refine:
        masks = np.zeros((2, h, w), bool)
        masks[0, h // 4: h // 2, w // 4: w // 2] = True
        masks[1, h // 2: 3 * h // 4, w // 2: 7 * w // 8] = True
        item.thing_masks = torch.from_numpy(masks)
        item.thing_classes = torch.tensor([3, 3])
        item.thing_weights = torch.ones(2)
        stuff = np.zeros((h, w), np.int64)
        stuff[masks.any(0)] = -1
        item.stuff_map = torch.from_numpy(stuff)
    return item


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(device: str, stage: str, backbone: str, n_props: int, steps: int, seed: int = 0,
            preset: str = "voc", scales: list[int] = SCALES) -> tuple[float, float]:
    """Seconds per image (median of ``steps`` after one warm-up step) and peak memory (MB)."""
    torch.manual_seed(seed)
    cfg = load_config(preset, [f"backbone.name={backbone}", f"input.max_proposals={n_props}",
                               "refine.mask_channels=256", "refine.semantic_channels=256"])
    model = build_model(cfg, VOC, stage, device)
    module = (RefineTrainModule(model, cfg) if stage == "refine"
              else MilTrainModule.from_config(model, cfg)).train()
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3,
                          momentum=0.9)
    rng = np.random.default_rng(seed)
    items = [random_item(rng, int(rng.choice(scales)), n_props, stage == "refine")
             for _ in range(steps + 1)]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for item in items:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        losses = module(item)
        sum(losses.values()).backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    return float(np.median(times[1:])), mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", action="append", help="cpu, cuda (repeatable; default cpu)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps on a GPU")
    ap.add_argument("--cpu-steps", type=int, default=2, help="timed steps on the CPU")
    ap.add_argument("--backbones", default="resnet18-ws,resnet50")
    ap.add_argument("--proposals", default="2000,4000")
    ap.add_argument("--stages", default="mine,refine")
    ap.add_argument("--config", default="voc",
                    help="the preset the model is built from (voc: the paper's; photos: the "
                         "own-photos recipe, at its own training scales)")
    ap.add_argument("--cpu-subset", action="store_true",
                    help="on the CPU only the first backbone and proposal count (a ratio "
                         "without minutes of CPU steps)")
    args = ap.parse_args()
    devices = args.device or ["cpu"]
    scales = SCALES if args.config == "voc" else load_config(args.config).input.train_scales
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    for device in devices:
        steps = args.cpu_steps if device == "cpu" else args.steps
        subset = device == "cpu" and args.cpu_subset
        for stage in args.stages.split(","):
            for backbone in args.backbones.split(",")[:1 if subset else None]:
                for n in [int(x) for x in args.proposals.split(",")][:1 if subset else None]:
                    sec, mem = measure(device, stage, backbone, n, steps, preset=args.config,
                                       scales=scales)
                    results.setdefault((stage, backbone, n), {})[device] = sec
                    print(f"{device:6} {stage:6} {backbone:12} {n:5} proposals: "
                          f"{1 / sec:6.2f} images/s ({sec:.3f} s/image), peak {mem:,.0f} MB",
                          flush=True)
    for (stage, backbone, n), by in results.items():
        gpu = next((v for k, v in by.items() if k != "cpu"), None)
        if gpu is not None and "cpu" in by:
            print(f"ratio {stage} {backbone} {n}: GPU {by['cpu'] / gpu:.1f}x the CPU's speed")


if __name__ == "__main__":
    main()
