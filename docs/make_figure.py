"""The README's picture from a finished demo: image | mined | refined, a few validation images.

``python docs/make_figure.py demo_out docs/img/demo.png [--images 3] [--ids 0,5,9]`` reads the
demo's validation images and the two predictions ``jtsm demo`` writes
(``OUT/val_mined/panoptic.json``, ``OUT/val_refined/panoptic.json``) and stacks one
:func:`jtsm.engine.panoptic_viz.draw_panel` row per image: the image, the mining run's
segmentation and the refined one, each segment labelled with its class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.engine.panoptic_viz import draw_panel
from jtsm.errors import DataError
from jtsm.fileio import read_image, safe_join, write_png


def demo_figure(demo_out: str | Path, count: int = 3, ids: list[int] | None = None
                ) -> np.ndarray:
    """``(H, W, 3)`` uint8: one ``image | mined | refined`` row per chosen val image.

    Arguments:
        demo_out: a ``jtsm demo --out`` folder.
        count: how many images (the first ones of the val json) when ``ids`` is not given.
        ids: image ids to show, in this order.
    """
    demo_out = Path(demo_out)
    mined = load_panoptic_json(demo_out / "val_mined" / "panoptic.json")
    refined = load_panoptic_json(demo_out / "val_refined" / "panoptic.json")
    images = demo_out / "data" / "images"
    chosen = ids if ids else [int(im["id"]) for im in mined.images[:count]]
    rows = []
    for image_id in chosen:
        rec = mined.image(image_id)
        image = read_image(safe_join(images, rec["file_name"]))
        panel, _ = draw_panel(image, mined.read(image_id), refined.read(image_id),
                              categories=mined.categories,
                              titles=("image", "mined (jtsm mine)", "refined (JTSM)"))
        rows.append(panel)
    if not rows:
        raise DataError(f"{demo_out}: no validation image to draw")
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    return np.concatenate(rows, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", help="a jtsm demo --out folder")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--images", type=int, default=3, help="how many val images")
    parser.add_argument("--ids", default="", help="comma-separated val image ids to show")
    args = parser.parse_args()
    ids = [int(i) for i in args.ids.split(",") if i.strip()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_png(args.out, demo_figure(args.demo_out, args.images, ids or None))
    print(args.out)


if __name__ == "__main__":
    main()
