"""Write a small folder of real photos and their tags file, to try jtsm's own-photos path.

    python examples/sample_photos.py photos tags.csv

The photos are the ones that ship with scikit-image (the astronaut, the cameraman, a cat, a
cup of coffee, a rocket, a motorcycle, coins), each as a few views (the photo, its mirror
image, a crop, a darker crop), 24 files in all, stored the ways phones and cameras store
them: JPEG and PNG, colour and grey, one JPEG stored on its side with an EXIF orientation
tag, one PNG with an alpha channel. ``tags.csv`` names what is in each (``;`` between tags);
``sky`` and ``grass`` are the stuff classes (``--stuff sky,grass``), the rest are things.

These are a check that the pipeline runs on real files, not a dataset to learn from: tags-only
learning needs many images per class (docs/own-data.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

#: (scikit-image function, file stem, tags); stuff classes: sky, grass
PHOTOS = [
    ("astronaut", "astronaut", "person;flag"),
    ("camera", "cameraman", "person;grass;sky"),
    ("chelsea", "cat", "cat"),
    ("coffee", "coffee", "cup"),
    ("rocket", "rocket", "rocket;sky"),
    ("stereo_motorcycle", "motorcycle", "motorcycle"),
    ("coins", "coins", "coin"),
]
STUFF = ("sky", "grass")


def _load(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disp)


def _views(img: np.ndarray, n: int) -> list[np.ndarray]:
    """The photo, its mirror image, a centre crop (80%) and a darker crop of the other corner."""
    h, w = img.shape[:2]
    ch, cw = int(h * 0.8), int(w * 0.8)
    crop = img[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    dark = (img[h - ch:, w - cw:].astype(np.float32) * 0.7).astype(np.uint8)
    return [img, np.ascontiguousarray(img[:, ::-1]), crop, dark][:n]


def write_sample(photos: Path, tags_file: Path) -> list[tuple[str, str]]:
    """Write the photos into ``photos`` and their tags into ``tags_file``; return
    ``[(file name, tags)]``."""
    photos.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (func, stem, tags) in enumerate(PHOTOS):
        views = _views(_load(func), 4 if i < 3 else 3)
        for v, img in enumerate(views):
            name = f"{stem}_{v + 1}"
            if func == "rocket" and v == 0:  # stored on its side, shown upright (EXIF 6)
                exif = Image.Exif()
                exif[0x0112] = 6
                Image.fromarray(np.ascontiguousarray(np.rot90(img, 1))).save(
                    photos / f"{name}.jpg", quality=92, exif=exif)
                rows.append((f"{name}.jpg", tags))
            elif func == "chelsea" and v == 1:  # with an alpha channel, fully opaque
                alpha = np.full(img.shape[:2] + (1,), 255, np.uint8)
                Image.fromarray(np.concatenate([img, alpha], axis=2)).save(photos / f"{name}.png")
                rows.append((f"{name}.png", tags))
            elif v % 2:
                Image.fromarray(img).save(photos / f"{name}.png")
                rows.append((f"{name}.png", tags))
            else:
                Image.fromarray(img).save(photos / f"{name}.jpg", quality=92)
                rows.append((f"{name}.jpg", tags))
    tags_file.write_text("file,tags\n" + "".join(f"{f},{t}\n" for f, t in rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="folder to write the photos into")
    parser.add_argument("tags", type=Path, help="tags file to write (CSV)")
    args = parser.parse_args()
    rows = write_sample(args.photos, args.tags)
    print(f"Wrote {len(rows)} photos to {args.photos} and their tags to {args.tags} "
          f"(stuff classes: {','.join(STUFF)})")


if __name__ == "__main__":
    main()
