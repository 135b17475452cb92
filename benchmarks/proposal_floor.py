"""Which things keep a proposal after the area floor (``input.min_proposal_area``).

For each floor, the top ``--top`` proposals that :func:`jtsm.data.mining_dataset.select_proposals`
keeps, and over the thing segments of the first ``--images`` images of a split: the share with
a kept proposal at mask IoU >= 0.5, the proposals kept per image, and the share of kept
proposals whose mask is under 2% of the image (part-sized ones; the CPU preset's mask floor
removes them all). No training; a few seconds per 100 images.

    python benchmarks/proposal_floor.py DATA PROPOSALS [--split train] [--images 300]

``DATA`` is a ``jtsm data synth`` folder (``annotations/panoptic_<split>.json``), ``PROPOSALS``
its proposal store.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from jtsm.config import InputConfig
from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.mining_dataset import select_proposals
from jtsm.evaluation.recall import best_overlaps
from jtsm.proposals.store import ProposalStore

FLOORS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.03)  # fractions of the image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("proposals", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--top", type=int, default=300)
    args = ap.parse_args()
    ds = load_panoptic_json(args.data / "annotations" / f"panoptic_{args.split}.json")
    store = ProposalStore(args.proposals)
    best: dict[int, list[np.ndarray]] = {i: [] for i in range(len(FLOORS))}
    kept: dict[int, list[int]] = {i: [] for i in range(len(FLOORS))}
    small: dict[int, list[float]] = {i: [] for i in range(len(FLOORS))}
    for im in ds.images[: args.images]:
        pan = ds.read(int(im["id"]), check=False)
        things = [int(s["id"]) for s in pan.segments
                  if ds.categories.isthing(int(s["category_id"])) and not s.get("iscrowd")]
        if not things:
            continue
        ps = store.load(str(im["file_name"]), expect_size=pan.image_size)
        h, w = ps.image_size
        for i, floor in enumerate(FLOORS):
            cfg = InputConfig(max_proposals=args.top, min_proposal_area=floor)
            sel = select_proposals(ps, cfg)
            best[i].append(best_overlaps(sel, pan.ids, things, [None])[0])
            kept[i].append(len(sel))
            small[i].append(float((sel.areas() < 0.02 * h * w).mean()) if len(sel) else 0.0)
    print(f"{args.data} ({args.split}, {len(kept[0])} images with things, top {args.top})")
    print("| floor | things with a proposal at IoU 0.5 | proposals kept | of them mask < 2% |")
    print("| --- | ---: | ---: | ---: |")
    for i, floor in enumerate(FLOORS):
        b = np.concatenate(best[i]) if best[i] else np.zeros(0)
        name = "none" if floor == 0 else f"mask >= {100 * floor:g}%"
        print(f"| {name} | {100 * (b >= 0.5).mean():.1f}% | {np.mean(kept[i]):.0f} "
              f"| {100 * np.mean(small[i]):.1f}% |")


if __name__ == "__main__":
    main()
