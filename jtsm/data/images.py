"""Where a stage's images come from: ``--images`` as a folder, one image file, or a list file.

Every stage names an image by its path relative to one root folder (the ``file_name`` of the
COCO-style jsons, the key of a proposal store), so all three forms come down to ``(root,
names)``:

- a **folder**: the root itself; its images are found by the stage (``names`` is ``None``);
- an **image file** (by its extension): its folder, and that one name;
- any other **file**: a text list, one image path per line (lines starting with ``#`` and
  blank lines are skipped), absolute or relative to the list's folder; the root is the
  deepest folder holding them all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jtsm.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "image_root", "image_source"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class ImageSource:
    """``root``: the folder image names are relative to; ``names``: the images a file or list
    named (POSIX, relative to ``root``), ``None`` for a whole folder."""

    root: Path
    names: tuple[str, ...] | None


def image_source(images: str | os.PathLike[str]) -> ImageSource:
    """Resolve ``--images``: a folder, one image file, or a text file listing image paths.

    Raises:
        DataError: the path does not exist, or a listed image is missing (naming the list's
            line and the path).
    """
    p = Path(images)
    if p.is_dir():
        return ImageSource(p, None)
    if not p.exists():
        raise DataError(f"{p}: no such image folder, image or list file")
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(p.parent, (p.name,))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not an image this reads ({', '.join(IMAGE_EXTENSIONS)}) nor a "
                        "text list of image paths") from None
    paths: list[Path] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        q = Path(line)
        q = (q if q.is_absolute() else p.parent / q).resolve()
        if not q.is_file():
            raise DataError(f"{p}: line {n}: no such image {line!r}")
        paths.append(q)
    if not paths:
        raise DataError(f"{p}: the image list names no images")
    root = Path(os.path.commonpath([str(q.parent) for q in paths]))
    names = tuple(q.relative_to(root).as_posix() for q in paths)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{p}: image {name!r} is listed twice")
        seen.add(name)
    return ImageSource(root, names)


def image_root(images: str | os.PathLike[str]) -> Path:
    """The folder that image names (a json's ``file_name``) are relative to, for ``--images``
    given in any of the three forms."""
    return image_source(images).root
