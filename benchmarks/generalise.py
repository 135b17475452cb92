"""The demo's whole pipeline, with its presets unchanged, on synthetic data it was not tuned on.

    python benchmarks/generalise.py --out /tmp/gen            # held-out classes, 112x176 px
    python benchmarks/generalise.py --out /tmp/gen --quick    # a smoke budget (minutes)

Every preset of this project was tuned on the default classes of ``jtsm data synth`` (five
shapes, four textures, 128x128 px). This generates 2000 + 100 images of the *other* classes of
the generator's pools (``cross hexagon crescent bar halfdisc`` / ``checker blotches hatch
rings``) at another size and seed, runs proposals -> mine -> relabel -> refine -> predict ->
eval exactly as ``jtsm demo`` does, and prints the same table: val PQ of the refined and of the
mined-only predictions, the pseudo labels' PQ on train and CorLoc of the mined detections.
Stages whose output exists under ``OUT`` are reused.
"""

from __future__ import annotations

import argparse
import sys
import time

from jtsm.data.synth import STUFF_TEXTURES, THING_SHAPES, SynthConfig
from jtsm.engine.demo import run_demo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="the demo's smoke budget")
    ap.add_argument("--size", type=int, nargs=2, default=(112, 176), metavar=("H", "W"))
    ap.add_argument("--object-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    synth = SynthConfig(height=args.size[0], width=args.size[1], things=THING_SHAPES[5:],
                        stuff=STUFF_TEXTURES[4:], object_scale=args.object_scale)
    t0 = time.perf_counter()
    r = run_demo(args.out, quick=args.quick, synth=synth, seed=args.seed, say=print)
    print(f"\nheld-out classes: {', '.join(synth.things)} / {', '.join(synth.stuff)}; "
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
