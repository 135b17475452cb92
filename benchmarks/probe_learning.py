"""Where from-scratch learning stands: the tag warm-up's tag AP, then MIL's CorLoc.

    python benchmarks/probe_learning.py --data /tmp/x/data --proposals /tmp/x/props \
        [--set tag_warmup.iters=600 --set tag_warmup.stride=0 ...] [--warmup-only] [--init W.pt]

Starts from the ``cpu`` preset with ``--set`` over it (the preset ``jtsm demo`` trains with)
and prints, after the tag warm-up, per-class average precision of its whole-image tag
classifier on the train and val splits (colour and texture are learned first, thing shapes
much later), then, after MIL, CorLoc on the first ``--corloc-images`` training images (the top
proposal of each tagged class against that class's boxes at IoU >= 0.5) and the share of tags
the MIL image scores get right at 0.5. Nothing is written but ``--save`` (the model weights).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from jtsm.config import Config, apply_overrides, load_config
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import MiningDataset, TagBatchDataset, resize_to_scale, to_tensor
from jtsm.engine.inference import score_proposals
from jtsm.engine.mine import MilTrainModule, TagWarmupModule, train_warmup
from jtsm.engine.trainer import train
from jtsm.evaluation.detection import box_iou
from jtsm.fileio import read_image, safe_join
from jtsm.modeling.build import build_model


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Non-interpolated AP of one class: ``scores`` and 0/1 ``truth`` over images."""
    order = np.argsort(-scores)
    t = truth[order]
    precision = np.cumsum(t) / np.arange(1, len(t) + 1)
    return float((precision * t).sum() / max(t.sum(), 1))


@torch.no_grad()
def tag_ap(warm: TagWarmupModule, data: Path, split: str, size: int, n: int) -> list[float]:
    """Per-class AP of the warm-up classifier on the first ``n`` tagged images of a split."""
    labels = read_image_labels(data / f"annotations/panoptic_{split}.json")
    warm.eval()
    probs, truth = [], []
    for rec in labels.tagged()[:n]:
        img = read_image(safe_join(data / "images", rec.file_name))
        h, w = resize_to_scale(*img.shape[:2], size, 1333)  # as TagBatchDataset resizes
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        probs.append(torch.sigmoid(warm.logits(to_tensor(img)[None]))[0].numpy())
        truth.append(labels.categories.tag_vector(rec.labels))
    p, t = np.array(probs), np.array(truth)
    return [average_precision(p[:, c], t[:, c]) for c in range(t.shape[1])]


def corloc(model: torch.nn.Module, ds: MiningDataset, gt_json: Path, cfg: Config,
           n: int) -> tuple[dict[str, float], float]:
    """CorLoc per class on the first ``n`` training images, and the tag accuracy at 0.5."""
    gt = {a["image_id"]: a for a in json.loads(gt_json.read_text())["annotations"]}
    cats = ds.categories
    hits: dict[str, list[bool]] = {}
    right = []
    for i in range(min(n, len(ds))):
        rec = ds.records[i]
        image, ps = ds.read(i)
        scores, y = score_proposals(model, image, ps, cfg.input.test_scales, cfg.input.max_size)
        right.append(((y > 0.5) == (cats.tag_vector(rec.labels) > 0.5)).mean())
        for c in rec.labels:
            k = cats.index(c)
            top = ps.boxes[int(np.argmax(scores[:, k]))][None].astype(np.float64)
            boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in
                              (s["bbox"] for s in gt[rec.id]["segments_info"]
                               if s["category_id"] == c)], np.float64)
            hits.setdefault(cats.names[k], []).append(bool((box_iou(top, boxes) >= 0.5).any()))
    return {k: float(np.mean(v)) for k, v in hits.items()}, float(np.mean(right))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a jtsm data synth folder")
    ap.add_argument("--proposals", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--init", type=Path, help="start from these weights (skips the warm-up)")
    ap.add_argument("--warmup-only", action="store_true")
    ap.add_argument("--corloc-images", type=int, default=300)
    ap.add_argument("--tag-images", type=int, default=200)
    ap.add_argument("--save", type=Path)
    args = ap.parse_args()

    cfg = apply_overrides(load_config("synth"), args.set).validate()
    train_json = args.data / "annotations/panoptic_train.json"
    ds = MiningDataset(read_image_labels(train_json), args.data / "images", args.proposals,
                       cfg.input)
    torch.manual_seed(cfg.seed)  # as run_mine: the same initial weights every run
    model = build_model(cfg, ds.categories)
    names = ds.categories.names
    if args.init is not None:
        model.load_state_dict(torch.load(args.init, weights_only=True))
    elif cfg.tag_warmup.iters > 0:
        t = time.perf_counter()
        warm = train_warmup(model, ds, cfg, None)
        print(f"warm-up: {cfg.tag_warmup.iters} iterations, {time.perf_counter() - t:.0f} s")
        size = TagBatchDataset(ds, 1).size
        for split in ("train", "val"):
            aps = tag_ap(warm, args.data, split, size, args.tag_images)
            per = " ".join(f"{n} {a:.2f}" for n, a in zip(names, aps))
            print(f"  tag AP {split}: mean {np.mean(aps):.3f} ({per})")
    if not args.warmup_only:
        t = time.perf_counter()
        train(MilTrainModule.from_config(model, cfg), ds, cfg.solver, cfg.seed, None,
              find_unused=True)
        print(f"MIL: {cfg.solver.max_iter} iterations, {time.perf_counter() - t:.0f} s")
        per_class, tags = corloc(model, ds, train_json, cfg, args.corloc_images)
        per = " ".join(f"{n} {v:.2f}" for n, v in per_class.items())
        print(f"  CorLoc {np.mean(list(per_class.values())):.3f} ({per}); "
              f"tags right at 0.5: {tags:.3f}")
    if args.save is not None:
        torch.save(model.state_dict(), args.save)


if __name__ == "__main__":
    main()
