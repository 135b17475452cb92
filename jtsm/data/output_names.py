"""The names of per-image outputs: one function, so that no two images share an output.

Every file a stage writes per image (a panoptic PNG of ``predict``, ``relabel`` or ``mine``'s
``mined/``, a ``viz`` panel and its legend, a proposal picture) is named by
:func:`output_name` from the image's path relative to its image root (the ``file_name`` of the
dataset json), keeping its folders:

- ``NAME.jpg``, where ``NAME`` holds no dot, becomes ``NAME.png`` (as COCO names its PNGs:
  ``000000000139.jpg`` -> ``000000000139.png``), in the image's own folder (``a/img.jpg`` ->
  ``a/img.png``);
- any other name keeps its whole name and gains ``.png``: ``x.png`` -> ``x.png.png``,
  ``photo.v2.jpg`` -> ``photo.v2.jpg.png``, ``IMG_1.JPG`` -> ``IMG_1.JPG.png``.

So ``a/img.jpg`` and ``b/img.jpg`` write ``a/img.png`` and ``b/img.png``, ``x.jpg`` and
``x.png`` write ``x.png`` and ``x.png.png``: an output name has one dot exactly when the first
rule made it (or the image's name has none: ``img`` -> ``img.png``). The proposal store keys
its files the same way, by the whole name: ``x.jpg.npz``. Names are POSIX paths (``\\`` read
as ``/``, as the store does), ``.`` parts dropped; an absolute name or a ``..`` part is
refused. :func:`check_output_names` refuses what no naming can tell apart (``a/./x.jpg`` and
``a/x.jpg``, an image without a dot beside its ``.jpg``, a file where another image's output
needs a folder), naming both images.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from jtsm.errors import DataError
from jtsm.fileio import NAME_MAX

__all__ = ["check_output_names", "output_name"]


def _parts(image: str) -> tuple[str, ...]:
    if not isinstance(image, str) or not image.strip() or "\x00" in image:
        raise DataError(f"invalid image file name {image!r:.80}")
    path = PurePosixPath(image.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise DataError(f"image file name {image!r:.80} must be relative to its image folder, "
                        "without '..'")
    return path.parts


def output_name(image: str, ext: str = ".png") -> str:
    """The output of ``image`` (its path relative to the image root): ``a/img.jpg`` ->
    ``a/img.png``, ``x.png`` -> ``x.png.png`` (see the module docstring); ``ext`` replaces
    ``.png`` (a panel's legend: ``.json``).

    Raises:
        DataError: the name is absolute, has a ``..`` part, or gives an output name with a part
            over 255 bytes.
    """
    *folders, last = _parts(image)
    stem = last[:-4] if last.endswith(".jpg") else ""
    name = (stem if stem and "." not in stem else last) + ext
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        raise DataError(f"image {image[:60]!r}...: its output name {name[:40]!r}... would be "
                        f"over {NAME_MAX} bytes, more than a file system takes; shorten it")
    return "/".join([*folders, name])


def check_output_names(images: Iterable[str], where: object) -> dict[str, str]:
    """``{output name: image}`` of ``images``; two images whose outputs would be one file, or
    one image's output where another's needs a folder, are refused naming both.

    Raises:
        DataError: ``where`` (the dataset json or image folder) and both images named.
    """
    by_name: dict[str, str] = {}
    for image in images:
        try:
            name = output_name(image)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        other = by_name.setdefault(name, image)
        if other != image:
            raise DataError(f"{where}: images {other!r} and {image!r} would both write the "
                            f"output {name!r}; rename one of them")
    for name, image in by_name.items():
        parts = name.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in by_name:
                raise DataError(f"{where}: image {by_name[folder]!r} writes the file "
                                f"{folder!r}, where image {image!r} needs a folder of that "
                                "name; rename one of them")
    return by_name
