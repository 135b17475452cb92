"""The demo's whole pipeline, with its presets unchanged, on synthetic data it was not tuned on.

    python benchmarks/generalise.py --out /tmp/gen            # held-out classes, 112x176 px
    python benchmarks/generalise.py --out /tmp/gen --quick    # a smoke budget (minutes)
    python benchmarks/generalise.py --out /tmp/gen-photo --style photo   # photo-like scenes

Every preset of this project was tuned on the default classes of ``jtsm data synth`` (five
shapes, four textures, 128x128 px). This generates 2000 + 100 images of the *other* classes of
the generator's pools (``cross hexagon crescent bar halfdisc`` / ``checker blotches hatch
rings``) at another size and seed, runs proposals -> mine -> relabel -> refine -> predict ->
eval exactly as ``jtsm demo`` does, and prints the same table: val PQ of the refined and of the
mined-only predictions, the pseudo labels' PQ on train and CorLoc of the mined detections.
``--style photo`` generates the photo-like style instead (``jtsm data synth --style photo``:
``quadruped chair lamp bicycle bottle`` / ``grass road wall water sky``, things that differ from
their surroundings by shape and shading rather than colour).

Then, per class: val PQ refined and mined-only, CorLoc of the mined training detections and,
per thing class, the recall at mask IoU 0.5 of the training images' proposals (the best CorLoc
mining could reach with them, up to the box-vs-mask difference). Stages whose output exists
under ``OUT`` are reused; an ``OUT`` whose data has other classes is refused.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from jtsm.data.synth import STUFF_TEXTURES, THING_SHAPES, SynthConfig, categories
from jtsm.data.synth_photo import PhotoConfig
from jtsm.engine.demo import run_demo


def thing_recall(gt_json: Path, proposals: Path, iou: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per thing class: the fraction of its non-crowd segments that some proposal of their
    image covers with mask IoU >= ``iou`` (all proposals), and the segment count ``n``."""
    from jtsm.evaluation.cocogt import load_panoptic_gt
    from jtsm.evaluation.recall import best_overlaps
    from jtsm.proposals.store import ProposalStore

    ds = load_panoptic_gt(gt_json)
    store = ProposalStore(proposals)
    best: dict[int, list[float]] = defaultdict(list)
    for im in ds.images:
        if int(im["id"]) not in ds.annotations:
            continue
        pan = ds.read(int(im["id"]), check=False)
        segs = [s for s in pan.segments if not int(s.get("iscrowd", 0))
                and ds.categories.isthing(int(s["category_id"]))]
        if not segs:
            continue
        ps = store.load(str(im["file_name"]), expect_size=pan.image_size)
        for s, b in zip(segs, best_overlaps(ps, pan.ids, [int(s["id"]) for s in segs],
                                            [None])[0]):
            best[int(s["category_id"])].append(float(b))
    names = {int(c["id"]): str(c["name"]) for c in ds.categories.categories}
    return {names[c]: {f"recall@{iou}": float(np.mean(np.asarray(v) >= iou)), "n": len(v)}
            for c, v in sorted(best.items())}


def per_class_table(r: dict[str, Any], cats: list[dict[str, Any]],
                    recall: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: per class PQ refined / mined-only (val), CorLoc (train), recall@0.5
    (train proposals, things); ``-`` where a class does not occur."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    rows = ["| class | | PQ refined | PQ mined | CorLoc | proposal recall@0.5 |",
            "| --- | --- | --- | --- | --- | --- |"]
    for c in cats:
        name = str(c["name"])
        refined = r["pq"]["per_class"].get(name, {}).get("pq")
        mined = r["pq_mined"]["per_class"].get(name, {}).get("pq")
        thing = bool(c["isthing"])
        corloc = r["corloc"]["per_class"].get(name) if thing else None
        rec = recall.get(name, {}).get("recall@0.5") if thing else None
        rows.append(f"| {name} | {'thing' if thing else 'stuff'} | {pct(refined)} | "
                    f"{pct(mined)} | {pct(corloc)} | {pct(rec)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="the demo's smoke budget")
    ap.add_argument("--style", choices=("default", "photo"), default="default",
                    help="default: the default style's held-out classes; photo: the photo-like "
                         "style's classes")
    ap.add_argument("--size", type=int, nargs=2, default=(112, 176), metavar=("H", "W"))
    ap.add_argument("--object-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    synth: SynthConfig | PhotoConfig
    if args.style == "photo":
        synth = PhotoConfig(height=args.size[0], width=args.size[1],
                            object_scale=args.object_scale)
    else:
        synth = SynthConfig(height=args.size[0], width=args.size[1], things=THING_SHAPES[5:],
                            stuff=STUFF_TEXTURES[4:], object_scale=args.object_scale)
    cats = categories(synth)
    out = Path(args.out)
    val_json = out / "data/annotations/panoptic_val.json"
    if val_json.is_file():  # a rerun reuses the data: it must be this style's
        from jtsm.fileio import read_json

        have = [c["name"] for c in read_json(val_json)["categories"]]
        if have != [c["name"] for c in cats]:
            print(f"error: {val_json} has the classes {', '.join(have)}, not the "
                  f"{args.style} style's; give another --out", file=sys.stderr)
            return 1
    t0 = time.perf_counter()
    r = run_demo(out, quick=args.quick, synth=synth, seed=args.seed, say=print)
    label = "photo-like style" if args.style == "photo" else "held-out classes"
    print(f"\n{label}: {', '.join(synth.things)} / {', '.join(synth.stuff)}; "
          f"{args.size[0]}x{args.size[1]} px, object scale {args.object_scale}, "
          f"seed {args.seed}; {time.perf_counter() - t0:.0f} s")
    print("| | PQ | SQ | RQ | PQ things | PQ stuff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, key in (("val, refined", "pq"), ("val, mined only", "pq_mined"),
                      ("pseudo labels, relabelled train", "pq_pseudo_train")):
        a = r[key]
        print(f"| {name} | {100 * a['All']['pq']:.1f} | {100 * a['All']['sq']:.1f} | "
              f"{100 * a['All']['rq']:.1f} | {100 * a['Things']['pq']:.1f} | "
              f"{100 * a['Stuff']['pq']:.1f} |")
    print(f"CorLoc of the mined training detections: {100 * r['corloc']['corloc']:.1f}%")
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items()))
    recall = thing_recall(out / "data/annotations/panoptic_train.json", out / "proposals")
    print("\nper class: val PQ; CorLoc of the mined training detections; recall at mask IoU "
          "0.5 of the training images' proposals")
    print("\n".join(per_class_table(r, cats, recall)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
