"""Case 17: ``viz --out`` equal to the image folder wrote the panel of ``x.jpg`` as ``x.png``
over the source image ``x.png``; ``viz --out`` into any folder replaced the files of the
panels' names without a word (a user's own ``x.png``), and a rerun left the panels of the
previous run beside the new ones. Now viz follows predict's rule: an out folder equal to,
inside or containing an input is refused before any work; a folder viz did not make is refused
unless ``--overwrite`` (which replaces files of the panels' names and keeps the others); a
rerun into its own folder replaces its previous panels as a set."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
from conftest import jtsm, tree

from jtsm.data.coco_panoptic import load_panoptic_json, write_panoptic_dataset


def _data(rel_data: Path, root: Path) -> tuple[Path, Path]:
    """``root/imgs`` with ``x.jpg`` and ``x.png`` (another photo), and ``root/gt/tree.json``
    listing both (with ``tree/`` PNGs)."""
    gt = load_panoptic_json(rel_data / "annotations/panoptic_train.json")
    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    images, segs = [], []
    for name, im in zip(["x.jpg", "x.png"], gt.images):
        cv2.imwrite(str(imgs / name), cv2.imread(str(rel_data / "images" / im["file_name"])))
        images.append({**im, "file_name": name})
        segs.append(gt.read(im["id"]))
    (root / "gt").mkdir()
    write_panoptic_dataset(root / "gt/tree.json", images, list(gt.categories.categories), segs)
    return imgs, root / "gt/tree.json"


def _viz(pan: Path, imgs: Path, out: Path, *more: object) -> tuple[int, str]:
    return jtsm("viz", "--panoptic", pan, "--images", imgs, "--out", out, "-q", *more)


def _one_line(code: int, text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), text
    for needle in needles:
        assert needle in lines[0], text


def test_out_equal_to_inside_or_containing_an_input_is_refused(tmp_path, rel_data):
    imgs, pan = _data(rel_data, tmp_path / "d")
    before = tree(tmp_path / "d")
    cases = [(imgs, "is the input --images"), (imgs / "viz", "is inside the input --images"),
             (tmp_path / "d", "contains the input --images"),
             (pan.parent, "contains the input --panoptic"),
             (pan.with_suffix(""), "is the input --panoptic")]  # its PNG folder
    for out, why in cases:
        _one_line(*_viz(pan, imgs, out), f"--out {out} {why}", "choose another --out")
        assert tree(tmp_path / "d") == before, out  # x.png is still the photo
    gt_copy = tmp_path / "g/gt.json"
    gt_copy.parent.mkdir()
    shutil.copy(pan, gt_copy)
    _one_line(*_viz(pan, imgs, tmp_path / "g", "--gt", gt_copy), "contains the input --gt")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["gt.json"]


def test_a_folder_viz_did_not_make_is_refused_unless_overwrite(tmp_path, rel_data):
    imgs, pan = _data(rel_data, tmp_path / "d")
    out = tmp_path / "holiday"
    out.mkdir()
    (out / "x.png").write_bytes(b"my own picture")
    (out / "holiday.jpg").write_bytes(b"my photo")
    code, text = _viz(pan, imgs, out)
    _one_line(code, text, f"{out}: holds files jtsm viz did not write", "--overwrite")
    assert tree(out) == {"x.png": b"my own picture", "holiday.jpg": b"my photo"}
    code, text = _viz(pan, imgs, out, "--overwrite")
    assert code == 0, text
    assert (out / "holiday.jpg").read_bytes() == b"my photo"  # never removed
    assert (out / "x.png").read_bytes() != b"my own picture"  # replaced, as asked
    assert {"x.png", "x.png.png", "x.json", "x.png.json"} <= set(tree(out))


def test_a_rerun_replaces_its_own_panels_as_a_set(tmp_path, rel_data):
    imgs, pan = _data(rel_data, tmp_path / "d")
    out = tmp_path / "viz"
    code, text = _viz(pan, imgs, out)
    assert code == 0, text
    panels = sorted(p for p in tree(out) if not p.startswith("."))
    assert panels == ["x.json", "x.png", "x.png.json", "x.png.png"]
    (out / "notes.txt").write_text("mine")
    code, text = _viz(pan, imgs, out, "--limit", 1)  # its own folder: no --overwrite needed
    assert code == 0, text
    assert sorted(p for p in tree(out) if not p.startswith(".")) == [
        "notes.txt", "x.json", "x.png"]  # the panel it no longer draws is gone, notes kept
    # a file of a panel's name that viz did not write is not replaced without --overwrite
    (out / "x.png").unlink()
    (out / "x.png").write_bytes(b"theirs")
    code, text = _viz(pan, imgs, out)
    _one_line(code, text, f"{out / 'x.png'}", "not written by jtsm viz", "--overwrite")
    assert (out / "x.png").read_bytes() == b"theirs"
