"""Image-level tags the way people keep them, turned into the labels json every stage reads.

Accepted tag files:

- **CSV / TSV**: one image per line, ``file,tags``; the tags are separated by ``;`` or spaces
  (further columns count as more tags); a header line (``file,tags``) is optional, lines
  starting with ``#`` and blank lines are skipped. The delimiter is a tab when the first line
  has one, otherwise a comma.
- **JSON** whose ``images`` carry ``labels`` (category names or ids; with ``categories`` when
  ids are used), or a plain object ``{file_name: [tag, ...]}``.
- **COCO** panoptic or instances json: the tags are the classes annotated in each image, and
  its categories decide which classes are things.

Output (:func:`labels_json`): ``{"images": [{id, file_name, height, width, labels}],
"categories": [{id, name, isthing}]}`` with ``labels`` the category ids, and ``height`` /
``width`` as a viewer shows the image (EXIF orientation applied). Names become ids 1..N, the
things first (sorted by name), then the stuff classes named by ``stuff``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jtsm.data.images import image_root
from jtsm.data.labels import detect_kind, read_image_labels
from jtsm.errors import DataError
from jtsm.fileio import read_image_size, read_json, safe_join

__all__ = ["labels_json", "read_tag_rows"]

_HEADER_FILE = {"file", "file_name", "filename", "image", "images", "path", "name"}
_HEADER_TAGS = {"tags", "tag", "labels", "label", "classes", "class", "categories"}


def _split_tags(field: str) -> list[str]:
    return [t for t in re.split(r"[;\s]+", field.strip()) if t]


def read_tag_rows(path: str | os.PathLike[str]) -> list[tuple[str, list[str], str]]:
    """``(file_name, tags, where)`` for each line of a CSV/TSV tags file (``where`` names the
    line for error messages).

    Raises:
        DataError: the file cannot be read as text, or a line has no file name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such tags file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
                        ) from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    delim = "\t" if "\t" in first else ","
    rows = []
    for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=delim), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        name = row[0].strip()
        if not rows and name.lower() in _HEADER_FILE and (
                len(row) < 2 or row[1].strip().lower() in _HEADER_TAGS):
            continue  # the header line
        if not name:
            raise DataError(f"{path}: line {n}: no file name in {delim.join(row)!r:.80}")
        tags = [t for field in row[1:] for t in _split_tags(field)]
        rows.append((name, tags, f"line {n}"))
    if not rows:
        raise DataError(f"{path}: no image lines (expected 'file,tags' lines, e.g. "
                        "'cat.jpg,cat;grass')")
    return rows


def _json_rows(path: Path, d: Any
               ) -> tuple[list[tuple[str, list[Any], str]], list[dict[str, Any]] | None]:
    """Rows from a labels-style json, and its categories when it has them."""
    if isinstance(d, dict) and "images" not in d and all(isinstance(v, list) for v in d.values()):
        return [(str(k), list(v), f"image {k!r}") for k, v in d.items()], None
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise DataError(f"{path}: expected an 'images' list, COCO annotations, or an object "
                        "{file_name: [tags]}")
    rows = []
    for i, im in enumerate(d["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
            raise DataError(f"{path}: images[{i}] needs a 'file_name'")
        labels = im.get("labels", [])
        if isinstance(labels, str):
            labels = _split_tags(labels)
        if not isinstance(labels, list):
            raise DataError(f"{path}: images[{i}] ({im['file_name']}): 'labels' must be a list "
                            f"of category names or ids, got {labels!r:.60}")
        rows.append((im["file_name"], labels, f"images[{i}] ({im['file_name']})"))
    cats = d.get("categories")
    if cats is not None and not (isinstance(cats, list) and all(
            isinstance(c, dict) and "id" in c and "name" in c for c in cats)):
        raise DataError(f"{path}: 'categories' must be a list of {{id, name}} objects")
    return rows, cats


def _name_rows(path: Path, rows: list[tuple[str, list[Any], str]],
               cats: list[dict[str, Any]] | None) -> list[tuple[str, list[str], str]]:
    """Every tag as a category name (ids looked up in ``cats``)."""
    by_id = {}
    for c in cats or []:
        try:
            by_id[int(c["id"])] = str(c["name"])
        except (TypeError, ValueError):
            raise DataError(f"{path}: category id {c['id']!r} is not an integer") from None
    out = []
    for name, tags, where in rows:
        names = []
        for t in tags:
            if isinstance(t, bool) or not isinstance(t, (int, str)):
                raise DataError(f"{path}: {where}: tag {t!r:.40} is neither a name nor an id")
            if isinstance(t, str) and t in by_id.values():
                names.append(t)
            elif cats is not None and str(t).strip().lstrip("-").isdigit():
                if int(t) not in by_id:
                    raise DataError(f"{path}: {where}: unknown category id {t}")
                names.append(by_id[int(t)])
            elif isinstance(t, int):
                raise DataError(f"{path}: {where}: category id {t} but the file has no "
                                "'categories' to say what it is")
            elif cats is not None:
                raise DataError(f"{path}: {where}: unknown category name {t!r} (categories: "
                                f"{', '.join(sorted(by_id.values()))})")
            else:
                names.append(t.strip())
        out.append((name, names, where))
    return out


def labels_json(tags_file: str | os.PathLike[str], images: str | os.PathLike[str],
                stuff: Sequence[str] = ()) -> dict[str, Any]:
    """Build the labels json (see the module docstring) from a tags file.

    Arguments:
        tags_file: CSV/TSV, labels-style json, or COCO panoptic/instances json.
        images: the folder (or one image / a list file: its root) the file names are under;
            every image is opened to read its displayed size.
        stuff: class names that are stuff (amorphous regions: sky, grass); the others are
            things. For a COCO json, its own ``isthing`` is kept unless a name is given here.

    Raises:
        DataError: naming the file, the line or image, and the value at fault.
    """
    path = Path(tags_file)
    root = image_root(images)
    stuff_set = {s.strip() for s in stuff if s.strip()}
    isthing: dict[str, bool] = {}
    ids: dict[str, int] = {}
    if path.suffix.lower() == ".json":
        d = read_json(path)
        kind = None
        if isinstance(d, dict) and isinstance(d.get("annotations"), list) and d["annotations"]:
            try:
                kind = detect_kind(d)
            except DataError:
                kind = None
        if kind in ("panoptic", "instances"):
            ls = read_image_labels(path)
            for c in ls.categories.categories:
                isthing[str(c["name"])] = bool(int(c.get("isthing", 1)))
                ids[str(c["name"])] = int(c["id"])
            names = {int(c["id"]): str(c["name"]) for c in ls.categories.categories}
            rows = [(im.file_name, [names[c] for c in im.labels], f"image {im.id} "
                     f"({im.file_name})") for im in ls.images]
        else:
            raw, cats = _json_rows(path, d)
            rows = _name_rows(path, raw, cats)
            for c in cats or []:
                if "isthing" in c:
                    isthing[str(c["name"])] = bool(int(c["isthing"]))
    else:
        rows = read_tag_rows(path)
    seen: dict[str, str] = {}
    present: set[str] = set()
    for name, tags, where in rows:
        if name in seen:
            raise DataError(f"{path}: {where}: image {name!r} is listed twice (also {seen[name]})")
        seen[name] = where
        present.update(tags)
    unknown = sorted(stuff_set - present - set(isthing))
    if unknown:
        raise DataError(f"{path}: --stuff names {', '.join(map(repr, unknown))}, which no image "
                        f"is tagged with (tags: {', '.join(sorted(present)) or 'none'})")
    for n in present | set(isthing):
        isthing[n] = n not in stuff_set and isthing.get(n, True)
    if not ids:
        order = sorted(isthing, key=lambda n: (not isthing[n], n))
        ids = {n: i + 1 for i, n in enumerate(order)}
    categories = [{"id": ids[n], "name": n, "isthing": int(isthing[n])}
                  for n in sorted(ids, key=lambda n: (not isthing[n], ids[n]))]
    out_images = []
    for i, (name, tags, where) in enumerate(rows):
        try:
            file = safe_join(root, name)
        except DataError as exc:
            raise DataError(f"{path}: {where}: {exc}") from None
        if not file.is_file():
            raise DataError(f"{path}: {where}: no image {name!r} in {root}")
        try:
            h, w = read_image_size(file)
        except DataError as exc:
            raise DataError(f"{path}: {where}: {exc}") from None
        out_images.append({"id": i + 1, "file_name": name, "height": h, "width": w,
                           "labels": sorted({ids[t] for t in tags})})
    return {"images": out_images, "categories": categories}
