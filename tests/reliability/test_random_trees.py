"""Random image trees through the whole pipeline, by the CLI.

For a few seeds, a tree of images with clashing stems (``a/img.jpg``, ``b/img.jpg``, ``x.jpg``
beside ``x.png``), nested folders, names that look alike (``x.png.jpg``, ``IMG.JPG`` beside
``img.jpg``, ``a__b/c.jpg`` beside ``a/b__c.jpg``, spaces, accents) and a link to one of its
images under another name goes through ``data tags``
-> ``proposals`` -> ``mine`` -> ``relabel`` -> ``predict`` -> ``viz``. Every image gets exactly
one output of each kind (proposal file, mined PNG, pseudo-label PNG, predicted PNG, viz panel),
named by :func:`jtsm.data.output_names.output_name`, and no file a command reads changes: the
photos and the tags file, and each stage's outputs once a later stage reads them (sha256 before
and after).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import TINY, jtsm

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.output_names import check_output_names, output_name
from jtsm.errors import DataError

REQUIRED = ["a/img.jpg", "b/img.jpg", "x.jpg", "x.png"]
#: Names that look alike; each tree takes some of these groups whole.
ALIKE = [["a__b/c.jpg", "a/b__c.jpg"], ["img.jpg", "IMG.JPG"], ["x.png.jpg", "x.jpeg"],
         ["photo.v2.jpg", "photo.v2.png"], ["été.jpg", "ete.jpg"], ["sp ace/x.jpg", "sp_ace/x.jpg"]]
FOLDERS = ["", "a", "b", "a/b", "a__b", "deep/er/est", "sp ace"]
STEMS = ["img", "x", "b__c", "c", "photo.v2", "IMG", "x.png", "été"]
EXTS = [".jpg", ".png", ".jpeg", ".JPG"]
SETS = [a for t in TINY for a in ("--set", t)]


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``REQUIRED``, three groups of ``ALIKE`` and random others up to ``n``, every one with
    an output of its own (what no output name could tell apart is refused by the stages, and
    tested in case 13)."""
    names = list(REQUIRED)
    for g in rng.choice(len(ALIKE), 3, replace=False):
        names += ALIKE[g]
    pool = [f"{d}/{s}{e}".lstrip("/") for d in FOLDERS for s in STEMS for e in EXTS]
    for i in rng.permutation(len(pool)):
        if len(names) == n:
            break
        if pool[i] in names:
            continue
        try:
            check_output_names([*names, pool[i]], "tree")
        except DataError:
            continue
        names.append(pool[i])
    return names


def _digests(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (a file root is itself), by path."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _tree(rel_data: Path, root: Path, names: list[str]) -> Path:
    """The photos (synth images re-encoded by their extension), a link ``alias/link.jpg`` to
    the first (appended to ``names``) and ``tags.csv`` of their ground-truth classes; returns
    the tags file."""
    sources = []
    for split in ("train", "val"):
        gt = load_panoptic_json(rel_data / f"annotations/panoptic_{split}.json")
        names_of = {int(c["id"]): str(c["name"]) for c in gt.categories.categories}
        for im in gt.images:
            seg = gt.read(im["id"])
            sources.append((rel_data / "images" / im["file_name"],
                            sorted({names_of[int(s["category_id"])] for s in seg.segments})))
    lines = ["file,tags"]
    for k, name in enumerate(names):
        src, classes = sources[k % len(sources)]
        ok, buf = cv2.imencode(Path(name).suffix.lower(), cv2.imread(str(src)))
        assert ok
        target = root / "imgs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buf.tobytes())
        lines.append(f"{name},{';'.join(classes)}")
    link = root / "imgs" / "alias" / "link.jpg"  # another name for an image of the tree
    link.parent.mkdir()
    link.symlink_to(Path("..") / names[0])
    lines.append(f"alias/link.jpg,{';'.join(sources[0][1])}")
    names.append("alias/link.jpg")
    (root / "tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "tags.csv"


def _ok(code: int, text: str) -> None:
    assert code == 0, text


def _pngs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_image_has_one_output_of_each_kind_and_no_input_changes(tmp_path, rel_data,
                                                                      seed):
    rng = np.random.default_rng(seed)
    names = _names(rng, int(rng.integers(12, 17)))
    tags = _tree(rel_data, tmp_path, names)
    imgs = tmp_path / "imgs"
    outputs = sorted(output_name(n) for n in names)
    assert len(set(outputs)) == len(names)
    read = _digests(imgs, tags)  # what the commands read, and must leave as it is

    labels = tmp_path / "labels.json"
    _ok(*jtsm("data", "tags", tags, "--images", imgs, "--out", labels, "--min-images", 1))
    assert sorted(im["file_name"] for im in json.loads(labels.read_text())["images"]) == \
        sorted(names)
    read.update(_digests(labels))

    props = tmp_path / "props"
    _ok(*jtsm("proposals", "--images", imgs, "--out", props, "--method", "felzenszwalb",
              "--max", 100, "-q"))
    assert sorted(p.relative_to(props).as_posix() for p in props.rglob("*.npz")) == \
        sorted(f"{n}.npz" for n in names)
    read.update(_digests(props))

    run = tmp_path / "run"
    _ok(*jtsm("mine", "--dataset", labels, "--images", imgs, "--proposals", props, "--out", run,
              "-q", *SETS))
    assert _pngs(run / "mined/panoptic") == outputs
    read.update(_digests(run))

    pseudo = tmp_path / "pseudo"
    _ok(*jtsm("relabel", "--run", run, "--dataset", labels, "--images", imgs, "--proposals",
              props, "--out", pseudo, "--evidence", "none", "-q"))
    assert _pngs(pseudo / "panoptic") == outputs
    read.update(_digests(pseudo))

    pred = tmp_path / "pred"
    _ok(*jtsm("predict", "--run", run, "--images", imgs, "--dataset", labels, "--proposals",
              props, "--out", pred, "-q"))
    assert _pngs(pred / "panoptic") == outputs
    read.update(_digests(pred))

    viz = tmp_path / "viz"
    _ok(*jtsm("viz", "--panoptic", pred / "panoptic.json", "--images", imgs, "--out", viz,
              "-q"))
    assert _pngs(viz) == outputs
    assert sorted(p.relative_to(viz).as_posix() for p in viz.rglob("*.json")) == \
        sorted(str(Path(o).with_suffix(".json").as_posix()) for o in outputs)

    for kind in (run / "mined", pseudo, pred):  # each json names every image once
        d = json.loads((kind / "panoptic.json").read_text())
        assert sorted(a["file_name"] for a in d["annotations"]) == outputs, kind
        assert sorted(im["file_name"] for im in d["images"]) == sorted(names), kind
    assert _digests(*(Path(p) for p in read)) == read  # nothing read was changed
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == sorted(["imgs", "tags.csv", "labels.json", "props", "run", "pseudo",
                                "pred", "viz"])  # no staging folder or temporary file left
