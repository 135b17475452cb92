"""Training throughput at the paper's VOC shapes: images/s and peak memory of ``mine`` and
``refine`` steps, on the CPU and (where there is one) a CUDA GPU, in the same run.

Each step is what ``jtsm mine`` / ``jtsm refine`` run per image: forward, the losses of
Eq. 2-4 (+ Eq. 9-10 for refine), backward and an SGD step, one image per step as the paper
(one image per GPU), on an item prepared as the loader prepares it (proposal tensors and the
instance targets built, pinned for a GPU). Weights are random; the image is a photo and its
proposals are realistic segments (``benchmarks/realistic_proposals.py``: unions of
neighbouring superpixels of the photo, as many feature cells on per proposal as selective
search's), sized as VOC training sees them: short side drawn from 480..1216 (step 32, aspect
4:3, long side capped at 2000), 2000 or 4000 proposals.

    python benchmarks/bench_train_throughput.py                  # CPU: a few steps
    python benchmarks/bench_train_throughput.py --device cuda --steps 20
    python benchmarks/bench_train_throughput.py --device cuda --device cpu --cpu-steps 2
    python benchmarks/bench_train_throughput.py --device cuda --precisions fp32,bf16 --json t.json

Prints one line per (device, stage, backbone, proposals, precision): images/s, seconds per
image, peak memory (CUDA: ``torch.cuda.max_memory_allocated`` of the step; CPU: the process's
peak RSS so far, an upper bound for the configurations after the first), on CUDA the host
synchronisations of one step (``torch.cuda.set_sync_debug_mode``), on any device those
:class:`jtsm.ops.sync_counter.HostSyncCounter` counts (on the CPU: a simulated GPU step), and
the proposals' mean on-cells at the backbone's stride; then, for each configuration run on
both devices, the GPU/CPU speed ratio. ``--json`` writes the same figures as a list of records.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import numpy as np
import torch
from realistic_proposals import BASE, on_cells, realistic_proposals  # benchmarks/ (sys.path)

from jtsm.config import Config, load_config
from jtsm.data.mining_dataset import to_tensor
from jtsm.data.refine_dataset import RefineItem, instance_targets
from jtsm.engine.mine import MilTrainModule
from jtsm.engine.refine import RefineTrainModule
from jtsm.modeling.build import build_model
from jtsm.ops.sync_counter import HostSyncCounter
from jtsm.structures import CategoryMap

SCALES = list(range(480, 1217, 32))
VOC = CategoryMap.from_coco([{"id": i + 1, "name": f"c{i}", "isthing": int(i < 20)}
                             for i in range(21)])


def voc_item(seed: int, short: int, n_props: int, refine: bool, max_size: int = 2000
             ) -> RefineItem:
    """A VOC-shaped training item: ``(3, H, W)`` photo (``H = short``, 4:3), ``n_props``
    realistic proposals, two tags (+ two pseudo instances and a stuff map for refine)."""
    h, w = short, min(int(short * 4 / 3), max_size)
    base = BASE if short >= BASE[0] else (h, w)  # tiny sizes (a dry run): no downscaling
    image, ps = realistic_proposals(h, w, n_props, seed % 4, base)
    tags = torch.zeros(VOC.num_classes)
    tags[[3, 20]] = 1
    item = RefineItem(to_tensor(image), tags, ps, 0)
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


def _step(module: torch.nn.Module, opt: torch.optim.Optimizer, item: RefineItem) -> None:
    opt.zero_grad(set_to_none=True)
    losses = module(item)
    sum(losses.values()).backward()
    opt.step()


def count_simulated_syncs(module: torch.nn.Module, opt: torch.optim.Optimizer,
                          item: RefineItem, device: str) -> int:
    """Host synchronisations of one training step as :class:`HostSyncCounter` counts them (on
    the CPU: a simulated GPU step)."""
    with HostSyncCounter(device) as counter:
        _step(module, opt, item)
    return counter.count


def loader_item(item: RefineItem, cfg: Config, device: str, refine: bool) -> RefineItem:
    """``item`` as the training loader hands it over: proposal tensors built, the instance
    branch's targets made (refine), every tensor pinned for a GPU."""
    item.tensors()
    if refine:
        r = cfg.refine
        item.roi_settings = (r.mask_rois, r.roi_iou, 2 * r.mask_size)
        item.roi_targets = instance_targets(item, *item.roi_settings)
    return item.pinned(device)


def count_host_syncs(module: torch.nn.Module, opt: torch.optim.Optimizer,
                     item: RefineItem) -> int:
    """Host synchronisations CUDA reports during one training step (sync debug mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _step(module, opt, item)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught)


def measure(device: str, stage: str, backbone: str, n_props: int, steps: int, seed: int = 0,
            preset: str = "voc", scales: list[int] = SCALES, precision: str | None = None,
            overrides: list[str] | None = None) -> dict[str, object]:
    """Seconds per image (median of ``steps`` after one warm-up step), peak memory (MB), on
    CUDA the host syncs of one more step, and the proposals' mean on-cells (one record)."""
    torch.manual_seed(seed)
    sets = [f"backbone.name={backbone}", f"input.max_proposals={n_props}",
            "refine.mask_channels=256", "refine.semantic_channels=256", *(overrides or [])]
    if precision:
        sets.append(f"backbone.precision={precision}")
    cfg = load_config(preset, sets)
    model = build_model(cfg, VOC, stage, device, pretrained=False)  # random weights: timing
    module = (RefineTrainModule(model, cfg) if stage == "refine"
              else MilTrainModule.from_config(model, cfg)).train()
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3,
                          momentum=0.9)
    rng = np.random.default_rng(seed)
    shorts = [int(rng.choice(scales)) for _ in range(steps + 1)]
    items = [loader_item(voc_item(seed + i, s, n_props, stage == "refine", cfg.input.max_size),
                         cfg, device, stage == "refine") for i, s in enumerate(shorts)]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for item in items:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _step(module, opt, item)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    syncs = count_host_syncs(module, opt, items[-1]) if cuda else None
    counted = count_simulated_syncs(module, opt, items[-1], device)
    sec = float(np.median(times[1:] or times))
    stride = int(model.backbone.stride)
    cells = float(np.mean(np.concatenate([on_cells(it.proposals, stride)
                                          for it in items])))
    return {"device": device, "stage": stage, "backbone": backbone, "proposals": n_props,
            "precision": precision or cfg.backbone.precision, "steps": len(times[1:] or times),
            "short_sides": shorts[1:] or shorts, "sec_per_image": sec, "images_per_s": 1 / sec,
            "peak_mb": mem, "peak_kind": "cuda_max_allocated" if cuda else "cpu_peak_rss",
            "host_syncs_per_step": syncs, "host_syncs_counted": counted,
            "mean_on_cells": cells}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", action="append", help="cpu, cuda (repeatable; default cpu)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps on a GPU")
    ap.add_argument("--cpu-steps", type=int, default=2, help="timed steps on the CPU")
    ap.add_argument("--backbones", default="resnet18-ws,resnet50")
    ap.add_argument("--proposals", default="2000,4000")
    ap.add_argument("--stages", default="mine,refine")
    ap.add_argument("--precisions", default="",
                    help="backbone.precision values to time, e.g. fp32,bf16 (default: the "
                         "preset's own)")
    ap.add_argument("--config", default="voc",
                    help="the preset the model is built from (voc: the paper's; photos: the "
                         "own-photos recipe, at its own training scales)")
    ap.add_argument("--scales", default="",
                    help="short sides to draw from, e.g. 480 or 96,128 (default: the preset's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="a config override KEY=VALUE (repeatable), e.g. mining.fc_dim=256")
    ap.add_argument("--cpu-subset", action="store_true",
                    help="on the CPU only the first backbone, proposal count and precision (a "
                         "ratio without minutes of CPU steps)")
    ap.add_argument("--json", help="also write the records to this file")
    args = ap.parse_args()
    devices = args.device or ["cpu"]
    if args.scales:
        scales = [int(x) for x in args.scales.split(",")]
    else:
        scales = SCALES if args.config == "voc" else load_config(args.config).input.train_scales
    precisions: list[str | None] = [p for p in args.precisions.split(",") if p] or [None]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    records: list[dict[str, object]] = []
    for device in devices:
        steps = args.cpu_steps if device == "cpu" else args.steps
        first = slice(1) if device == "cpu" and args.cpu_subset else slice(None)
        for stage in args.stages.split(","):
            for backbone in args.backbones.split(",")[first]:
                for n in [int(x) for x in args.proposals.split(",")][first]:
                    for prec in precisions[first]:
                        r = measure(device, stage, backbone, n, steps, preset=args.config,
                                    scales=scales, precision=prec, overrides=args.overrides)
                        records.append(r)
                        syncs = ("" if r["host_syncs_per_step"] is None
                                 else f", {r['host_syncs_per_step']} host syncs/step")
                        syncs += f" ({r['host_syncs_counted']} counted)"
                        print(f"{device:6} {stage:6} {backbone:12} {n:5} proposals "
                              f"{r['precision']:4}: {r['images_per_s']:6.2f} images/s "
                              f"({r['sec_per_image']:.3f} s/image), peak "
                              f"{r['peak_mb']:,.0f} MB{syncs}, "
                              f"{r['mean_on_cells']:.0f} on-cells/proposal", flush=True)
                        if args.json:  # after each configuration: a timeout keeps the rest
                            with open(args.json, "w") as fh:
                                json.dump(records, fh, indent=1)
    by: dict[tuple, dict[str, float]] = {}
    for r in records:
        key = (r["stage"], r["backbone"], r["proposals"], r["precision"])
        by.setdefault(key, {})[str(r["device"])] = float(r["sec_per_image"])  # type: ignore
    for (stage, backbone, n, prec), d in by.items():
        gpu = next((v for k, v in d.items() if k != "cpu"), None)
        if gpu is not None and "cpu" in d:
            print(f"ratio {stage} {backbone} {n} {prec}: GPU {d['cpu'] / gpu:.1f}x the CPU's "
                  "speed")


if __name__ == "__main__":
    main()
