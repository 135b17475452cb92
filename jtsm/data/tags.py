"""Image-level tags the way people keep them, turned into the labels json every stage reads.

Accepted tag files:

- **CSV / TSV**: one image per line, ``file,tags``. The tags of a line are everything after the
  file name. When they hold a ``;``, ``|`` or ``,`` (a comma inside a quoted field, or more
  tag columns), those separate the tags and spaces inside a tag are kept (``traffic
  light;sky``); otherwise spaces separate them (``person sea sand sky``). Empty tags
  (``cat;;dog``) are dropped. Quoting follows the CSV standard (``"a, b"``; a literal ``"``
  inside a quoted field is written ``""``); a quote that is never closed, or a quoted field that
  runs over lines, is refused naming the line where it opened. A header line (``file,tags``) is
  optional; lines starting with ``#`` and blank lines are skipped. The delimiter is a tab when
  the first line has one, otherwise a comma.
- **JSON** whose ``images`` carry ``labels`` (category names or ids; with ``categories`` when
  ids are used), or a plain object ``{file_name: [tag, ...]}``; each list item is one tag (an
  empty string or ``null`` is refused). A key given twice in one object, a category id listed
  twice and two categories of one name are refused.
- **COCO** panoptic or instances json: the tags are the classes annotated in each image, and
  its categories decide which classes are things.

Tag names are compared without case and surrounding space, and runs of spaces inside a name count
as one: ``DOG``, ``Dog`` and ``dog`` are one class, spelled as first seen (categories first), and
:attr:`TagReport.merged` lists the other spellings. Every reader gives the same class names for
the same tags. File names are normalised (``./x.jpg``, ``sub/../x.jpg`` and ``x.jpg/`` are
``x.jpg``) before the check that no image is listed twice, and written normalised.

Output (:func:`read_tags`): ``{"info": {description, digest}, "images": [{id, file_name, height,
width, labels}], "categories": [{id, name, isthing}]}`` with ``labels`` the category ids, ``info``
saying that ``data tags`` wrote it (with a digest of the rest, so that a copy edited by hand is
told apart from its own output, which a rerun may replace), and ``height`` /
``width`` as a viewer shows the image (EXIF orientation applied). Names become ids 1..N, the
things first (sorted by name, ignoring case), then the stuff classes named by ``stuff``; a COCO
json keeps its own ids. Beside it a :class:`TagReport`: merged spellings, images under
``images`` that the file does not list, and classes on fewer than ``min_images`` images.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jtsm.data.images import image_root
from jtsm.data.labels import detect_kind, read_image_labels
from jtsm.errors import DataError
from jtsm.fileio import read_image_size, read_json, safe_join

__all__ = ["TagReport", "TAGS_INFO", "labels_digest", "labels_json", "not_own_labels",
           "read_tag_rows", "read_tags", "split_tags"]

_HEADER_FILE = {"file", "file_name", "filename", "image", "images", "path", "name"}
_HEADER_TAGS = {"tags", "tag", "labels", "label", "classes", "class", "categories"}
_SEPARATORS = re.compile(r"[;|,]")

Row = tuple[str, list[str], str]  # (file name, tag names, where: "line 3" / "images[2] (x.jpg)")


def _clean(name: str) -> str:
    """Surrounding space dropped, inner runs of white space made one space."""
    return " ".join(name.split())


def split_tags(text: str) -> list[str]:
    """The tag names of a tags field: split at ``;``, ``|`` and ``,`` when it holds any (spaces
    inside a name kept), else at white space; empty names dropped."""
    parts = _SEPARATORS.split(text) if _SEPARATORS.search(text) else text.split()
    return [n for n in map(_clean, parts) if n]


def read_tag_rows(path: str | os.PathLike[str]) -> list[Row]:
    """``(file_name, tags, where)`` for each image line of a CSV/TSV tags file (``where`` names
    the line for error messages).

    Raises:
        DataError: the file cannot be read as text, a quote is not closed on its line, a line
            has no file name, or a tag holds a stray ``"``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such tags file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
                        ) from None
    # comment lines become blank (a quote in a comment opens nothing; line numbers stay)
    lines = ["" if ln.lstrip().startswith("#") else ln for ln in text.split("\n")]
    first = next((ln for ln in lines if ln.strip()), "")
    delim = "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO("\n".join(lines), newline=""), delimiter=delim,
                        strict=True, skipinitialspace=True)
    rows: list[Row] = []
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(_quote_error(path, start, reader.line_num, str(exc))) from None
        end = reader.line_num
        if end > start:  # a quoted field holding a line break: a stray quote, most likely
            raise DataError(_quote_error(path, start, end, ""))
        if not row or not "".join(row).strip():
            continue
        name = row[0].strip()
        if not rows and name.lower() in _HEADER_FILE and (
                len(row) < 2 or row[1].strip().lower() in _HEADER_TAGS):
            continue  # the header line
        if not name:
            raise DataError(f"{path}: line {start}: no file name in {delim.join(row)!r:.80}")
        fields = [f for f in row[1:] if f.strip()]
        tags = split_tags(",".join(fields))  # more tag columns separate tags as commas do
        for t in tags:
            if '"' in t:
                raise DataError(f"{path}: line {start}: tag {t!r} holds a '\"' (a stray quote? "
                                'a quote belongs around a whole field: "a;b")')
        rows.append((name, tags, f"line {start}"))
    if not rows:
        raise DataError(f"{path}: no image lines (expected 'file,tags' lines, e.g. "
                        "'cat.jpg,cat;grass')")
    return rows


def _quote_error(path: Path, start: int, end: int, reason: str) -> str:
    """The message for a quote csv could not read on one line (``start``..``end``)."""
    if "unexpected end of data" in reason or end > start:
        upto = "the end of the file" if "unexpected end" in reason else f"line {end}"
        return (f"{path}: line {start}: a '\"' opens a quoted field that is not closed on this "
                f"line (it runs on to {upto}); remove the stray quote, or close it on line "
                f"{start}")
    return (f"{path}: line {start}: malformed quoting ({reason}); a quoted field is a whole "
            'field in quotes, with a literal quote inside it doubled ("")')


def _name(path: Path, value: Any, where: str, what: str = "tag") -> str:
    """One tag or category name from a json: a non-empty string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{path}: {where}: empty {what} name {json.dumps(value)} (remove it, "
                        "or name the class)")
    if not isinstance(value, str):
        raise DataError(f"{path}: {where}: {what} {value!r:.40} is not a name (a string)")
    return _clean(value)


@dataclass(frozen=True)
class _Category:
    name: str
    id: int
    isthing: bool | None


def _categories(path: Path, cats: Any) -> list[_Category]:
    """A json's categories, checked: ``{id, name}`` objects, ids and names unique (names
    compared as tags are: without case and surrounding space)."""
    if not isinstance(cats, list) or not all(isinstance(c, dict) and "id" in c and "name" in c
                                             for c in cats):
        raise DataError(f"{path}: 'categories' must be a list of {{id, name}} objects")
    out: list[_Category] = []
    ids: dict[int, int] = {}
    keys: dict[str, int] = {}
    for i, c in enumerate(cats):
        where = f"categories[{i}]"
        cid = c["id"]
        if isinstance(cid, bool) or not isinstance(cid, (int, str)) or not str(
                cid).strip().lstrip("-").isdigit():
            raise DataError(f"{path}: {where}: category id {cid!r:.40} is not an integer")
        cid = int(cid)
        name = _name(path, c["name"], where, "category")
        if cid in ids:
            raise DataError(f"{path}: {where}: category id {cid} is listed twice (also "
                            f"categories[{ids[cid]}])")
        if name.casefold() in keys:
            j = keys[name.casefold()]
            raise DataError(f"{path}: {where}: category {c['name']!r} is the class of "
                            f"categories[{j}] ({cats[j]['name']!r}): names are compared "
                            "without case and surrounding space")
        isthing = c.get("isthing")
        if isthing is not None and isthing not in (0, 1):
            raise DataError(f"{path}: {where}: isthing must be 0 or 1, got {isthing!r:.40}")
        ids[cid], keys[name.casefold()] = i, i
        out.append(_Category(name, cid, None if isthing is None else bool(isthing)))
    return out


def _json_rows(path: Path, d: Any) -> tuple[list[Row], list[_Category]]:
    """Rows from a labels-style json or a ``{file_name: [tags]}`` object, every tag a name
    (ids looked up in the categories), and the categories when it has them."""
    if isinstance(d, dict) and d and not {"images", "annotations", "categories"} & set(d) \
            and any(isinstance(v, (list, str)) for v in d.values()):
        rows = []
        for k, v in d.items():
            where = f"image {k!r}"
            if isinstance(v, str):
                rows.append((k, split_tags(v), where))
            elif isinstance(v, list):
                rows.append((k, [_name(path, t, where) for t in v], where))
            else:
                raise DataError(f"{path}: {where}: tags must be a list of names, got {v!r:.60}")
        return rows, []
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise DataError(f"{path}: expected an 'images' list, COCO annotations, or an object "
                        "{file_name: [tags]}")
    cats = _categories(path, d["categories"]) if "categories" in d else None
    by_key = {c.name.casefold(): c.name for c in cats or []}
    by_id = {c.id: c.name for c in cats or []}
    rows = []
    for i, im in enumerate(d["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
            raise DataError(f"{path}: images[{i}] needs a 'file_name'")
        where = f"images[{i}] ({im['file_name']})"
        labels = im.get("labels", [])
        if isinstance(labels, str):
            labels = split_tags(labels)
        if not isinstance(labels, list):
            raise DataError(f"{path}: {where}: 'labels' must be a list of category names or "
                            f"ids, got {labels!r:.60}")
        names = []
        for t in labels:
            if isinstance(t, int) and not isinstance(t, bool):
                if cats is None:
                    raise DataError(f"{path}: {where}: category id {t} but the file has no "
                                    "'categories' to say what it is")
                if t not in by_id:
                    raise DataError(f"{path}: {where}: unknown category id {t}")
                names.append(by_id[t])
                continue
            n = _name(path, t, where)
            if cats is None:
                names.append(n)
            elif n.casefold() in by_key:
                names.append(n)  # its spelling is merged onto the category's
            elif n.lstrip("-").isdigit() and int(n) in by_id:
                names.append(by_id[int(n)])
            else:
                what = "id" if n.lstrip("-").isdigit() else "name"
                raise DataError(f"{path}: {where}: unknown category {what} {n!r} (categories: "
                                f"{', '.join(sorted(by_id.values(), key=str.casefold))})")
        rows.append((im["file_name"], names, where))
    return rows, cats or []


def _coco_rows(path: Path, d: dict[str, Any]) -> tuple[list[Row], list[_Category]]:
    """Rows of a COCO panoptic/instances json: the classes annotated in each image."""
    cats = _categories(path, d.get("categories"))
    ls = read_image_labels(path)
    names = {c.id: c.name for c in cats}
    rows = [(im.file_name, [names[c] for c in im.labels], f"image {im.id} ({im.file_name})")
            for im in ls.images]
    return rows, cats


def _is_coco(d: Any) -> bool:
    if not (isinstance(d, dict) and isinstance(d.get("annotations"), list) and d["annotations"]):
        return False
    try:
        return detect_kind(d) in ("panoptic", "instances")
    except DataError:
        return False


def _file_key(name: str) -> str:
    """A file name with ``.``, ``..`` and doubled or trailing slashes resolved as text:
    ``./x.jpg``, ``sub/../x.jpg`` and ``x.jpg/`` are ``x.jpg`` (a name that leaves the folder
    keeps its ``..``, for safe_join to refuse)."""
    return posixpath.normpath(name.strip()) if name.strip() else name


@dataclass(frozen=True)
class TagReport:
    """What reading a tags file found besides the labels: notices and warnings for the user.

    Attributes:
        merged: class name -> the other spellings (in case) merged into it.
        unlisted: images under ``images`` that the tags file does not list (sorted names).
        images_per_class: class name -> number of images tagged with it.
        min_images: classes on fewer images than this are warned about.
    """

    merged: dict[str, tuple[str, ...]]
    unlisted: tuple[str, ...]
    images_per_class: dict[str, int]
    min_images: int

    @property
    def rare(self) -> dict[str, int]:
        """Classes tagged on fewer than ``min_images`` images, with their counts."""
        return {n: k for n, k in self.images_per_class.items() if k < self.min_images}

    def notices(self) -> list[str]:
        """At most one line: the spellings merged into one class."""
        if not self.merged:
            return []
        items = [f"{n!r} (also {', '.join(map(repr, v))})" for n, v in self.merged.items()]
        more = f" and {len(items) - 8} more" if len(items) > 8 else ""
        return ["tag names that differ only in case are one class: "
                + ", ".join(items[:8]) + more]

    def warnings(self, tags_file: str = "the tags file", images: str = "--images") -> list[str]:
        """One line per finding: unlisted images, classes on one image, classes on few."""
        out = []
        if self.unlisted:
            n = len(self.unlisted)
            more = f" and {n - 5} more" if n > 5 else ""
            out.append(f"{n} image{'s' * (n != 1)} under {images} {'are' if n != 1 else 'is'} "
                       f"not in {tags_file}, so no stage will use "
                       f"{'them' if n != 1 else 'it'}: {', '.join(self.unlisted[:5])}{more}")
        rare = self.rare
        once = [n for n, k in rare.items() if k <= 1]
        if once:
            none = any(rare[n] == 0 for n in once)
            out.append(f"{len(once)} class{'es' * (len(once) != 1)} tagged on "
                       f"{'one image or none' if none else 'one image only'} will not be "
                       "learned (learning from tags alone needs many images per class): "
                       f"{', '.join(_counted(n, rare[n]) for n in once)}")
        few = [n for n, k in rare.items() if k > 1]
        if few:
            out.append(f"{len(few)} class{'es' * (len(few) != 1)} tagged on fewer than "
                       f"{self.min_images} images (--min-images) may not be learned: "
                       f"{', '.join(_counted(n, rare[n]) for n in few)}")
        return out


def _counted(name: str, k: int) -> str:
    return f"{name!r} ({k} image{'s' * (k != 1)})"


class _Spellings:
    """Class names by their key (case-folded); the first spelling is the class's name."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}
        self.others: dict[str, list[str]] = {}

    def add(self, name: str) -> str:
        key = name.casefold()
        first = self.first.setdefault(key, name)
        if name != first and name not in self.others.setdefault(key, []):
            self.others[key].append(name)
        return first

    def merged(self) -> dict[str, tuple[str, ...]]:
        return {self.first[k]: tuple(v) for k, v in self.others.items() if v}


def read_tags(tags_file: str | os.PathLike[str], images: str | os.PathLike[str],
              stuff: Sequence[str] = (), min_images: int = 2
              ) -> tuple[dict[str, Any], TagReport]:
    """Build the labels json (see the module docstring) from a tags file, and a report.

    Arguments:
        tags_file: CSV/TSV, labels-style json, or COCO panoptic/instances json.
        images: the folder (or one image / a list file: its root) the file names are under;
            every image is opened to read its displayed size.
        stuff: class names that are stuff (amorphous regions: sky, grass); the others are
            things. For a COCO json, its own ``isthing`` is kept unless a name is given here.
        min_images: the report lists classes tagged on fewer images than this.

    Returns:
        ``(labels, report)``: the labels json dict and a :class:`TagReport`. The labels do not
        depend on what the report finds.

    Raises:
        DataError: naming the file, the line or image, and the value at fault.
    """
    path = Path(tags_file)
    root = image_root(images)
    if path.suffix.lower() == ".json":
        d = read_json(path)  # a key given twice in one object is refused
        coco = _is_coco(d)
        rows, cats = _coco_rows(path, d) if coco else _json_rows(path, d)
    else:
        coco, (rows, cats) = False, (read_tag_rows(path), [])
    spell = _Spellings()
    for c in cats:
        spell.add(c.name)
    seen: dict[str, tuple[str, str]] = {}
    named: list[tuple[str, str, set[str], str]] = []
    for name, tags, where in rows:
        key = _file_key(name)
        if key in seen:
            w0, n0 = seen[key]
            also = f"also {w0}" + (f", as {n0!r}" if n0 != name else "")
            raise DataError(f"{path}: {where}: image {name!r} is listed twice ({also})")
        seen[key] = (where, name)
        named.append((key, name, {spell.add(t) for t in tags}, where))
    classes = set(spell.first.values())
    by_key = {n.casefold(): n for n in classes}
    stuff_keys = {_clean(s).casefold() for s in stuff if s.strip()}
    unknown = sorted(s for s in stuff if s.strip() and _clean(s).casefold() not in by_key)
    if unknown:
        raise DataError(f"{path}: --stuff names {', '.join(map(repr, unknown))}, which no image "
                        f"is tagged with (tags: {', '.join(sorted(classes)) or 'none'})")
    declared = {c.name: c.isthing for c in cats}
    isthing = {n: n.casefold() not in stuff_keys and declared.get(n) is not False
               for n in classes}
    if coco:
        ids = {c.name: c.id for c in cats}
    else:
        order = sorted(classes, key=lambda n: (not isthing[n], n.casefold(), n))
        ids = {n: i + 1 for i, n in enumerate(order)}
    categories = [{"id": ids[n], "name": n, "isthing": int(isthing[n])}
                  for n in sorted(classes, key=lambda n: (not isthing[n], ids[n]))]
    out_images = []
    count = dict.fromkeys(classes, 0)
    for i, (key, name, tags, where) in enumerate(named):
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
        out_images.append({"id": i + 1, "file_name": key, "height": h, "width": w,
                           "labels": sorted(ids[t] for t in tags)})
        for t in tags:
            count[t] += 1
    report = TagReport(spell.merged(), _unlisted(images, seen), dict(sorted(
        count.items(), key=lambda kv: (kv[1], kv[0].casefold()))), min_images)
    labels = {"images": out_images, "categories": categories}
    return {"info": {"description": TAGS_INFO, "digest": labels_digest(labels)},
            **labels}, report


#: ``info.description`` of the labels json ``jtsm data tags`` writes: with ``info.digest``
#: (:func:`labels_digest`), how it recognises its own output (:func:`not_own_labels`).
TAGS_INFO = "jtsm data tags"


def labels_digest(d: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of a labels json's ``images`` and ``categories``, as values (the
    file's spacing and key order do not count)."""
    body = {"images": d.get("images"), "categories": d.get("categories")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def not_own_labels(path: str | os.PathLike[str]) -> str | None:
    """``None`` when ``path`` is a labels json ``data tags`` wrote and nobody changed since (its
    ``info`` says so and its digest still fits its content), else why it is not."""
    try:
        d = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return f"was not written by {TAGS_INFO}"
    info = d.get("info") if isinstance(d, dict) else None
    if not isinstance(info, dict) or info.get("description") != TAGS_INFO:
        return f"was not written by {TAGS_INFO}"
    if info.get("digest") != labels_digest(d):
        return f"was written by {TAGS_INFO} but was edited since"
    return None


def _unlisted(images: str | os.PathLike[str], listed: dict[str, Any]) -> tuple[str, ...]:
    """Images found under ``images`` (as every stage lists them) that are not in ``listed``."""
    from jtsm.proposals.runner import list_images

    return tuple(it.name for it in list_images(images) if _file_key(it.name) not in listed)


def labels_json(tags_file: str | os.PathLike[str], images: str | os.PathLike[str],
                stuff: Sequence[str] = ()) -> dict[str, Any]:
    """The labels json of :func:`read_tags`, without its report."""
    return read_tags(tags_file, images, stuff)[0]
