"""Predict one photo with a trained run from Python (a notebook does the same).

Usage:
    python examples/predictor_example.py RUN IMAGE [--out PANEL.png]

RUN is a folder written by ``jtsm mine`` or ``jtsm refine``; IMAGE any photo. Prints the
things found (class, score, box, pixels) and the stuff regions, and with ``--out`` writes the
picture ``jtsm predict --viz`` draws (image | prediction, named, with a legend).
"""

from __future__ import annotations

import argparse

from jtsm import Predictor
from jtsm.fileio import read_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("image")
    ap.add_argument("--out", help="write a panel PNG (and its legend .json) here")
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if any)")
    args = ap.parse_args()

    predictor = Predictor(args.run, device=args.device)
    image = read_image(args.image)  # RGB uint8 (H, W, 3), turned as a viewer shows it
    result = predictor(image)

    seg = result.panoptic
    print(f"{args.image}: {image.shape[1]}x{image.shape[0]} px, {len(seg.segments)} segments")
    for inst in result.instances:
        x, y, w, h = inst["bbox"]
        print(f"  thing {inst['name']:<12} score {inst['score']:.2f}  box x={x:.0f} y={y:.0f} "
              f"w={w:.0f} h={h:.0f}  {int(inst['mask'].sum())} px")
    things = {inst["category_id"] for inst in result.instances}
    for s in seg.segments:
        if s["category_id"] not in things:
            print(f"  stuff {result.name(s['category_id']):<12} {s['area']} px")
    if args.out:
        from jtsm.engine.panoptic_viz import write_panel

        write_panel(args.out, image, seg, categories=predictor.categories)
        print(f"  panel -> {args.out}")


if __name__ == "__main__":
    main()
