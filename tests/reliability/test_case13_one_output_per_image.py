"""Case 13: per-image outputs were named by the image's base name only. With ``a/img.jpg``,
``b/img.jpg``, ``x.jpg`` and ``x.png`` in one tree, ``predict`` said "Predicted 4 images" and
wrote 2 PNGs, ``mine`` the same in ``mined/`` (then ``relabel`` failed: ``PNG has segment id(s)
[...] absent from segments_info``), and ``viz`` panels of ``a__b/c`` and ``a/b__c`` were one
file. Now one function names every per-image output from the image's path relative to its
root (:mod:`jtsm.data.output_names`): ``a/img.png``, ``b/img.png``, ``x.png``, ``x.png.png``;
readers follow ``file_name`` into subfolders and refuse ``..``; what no name can tell apart is
refused naming both images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import TINY, jtsm

from jtsm.data.coco_panoptic import load_panoptic_json, write_panoptic_dataset
from jtsm.structures import mask_to_rle

NAMES = ["a/img.jpg", "b/img.jpg", "x.jpg", "x.png"]
PNGS = ["a/img.png", "b/img.png", "x.png", "x.png.png"]


def _tree(rel_data: Path, root: Path, names: list[str]) -> Path:
    """The first train images of ``rel_data`` under ``names`` (``.png`` ones re-encoded),
    with their ground truth as ``root/tree.json`` (written by the panoptic writer)."""
    gt = load_panoptic_json(rel_data / "annotations/panoptic_train.json")
    images, segs = [], []
    for name, im in zip(names, gt.images):
        target = root / "imgs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = cv2.imread(str(rel_data / "images" / im["file_name"]))
        cv2.imwrite(str(target), pixels)
        images.append({**im, "file_name": name})
        segs.append(gt.read(im["id"]))
    write_panoptic_dataset(root / "tree.json", images, list(gt.categories.categories), segs)
    return root / "tree.json"


def _pngs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_every_stage_writes_one_output_per_image(tmp_path, rel_data):
    tree = _tree(rel_data, tmp_path, NAMES)
    imgs = tmp_path / "imgs"
    assert _pngs(tmp_path / "tree") == PNGS  # the dataset writer itself
    code, text = jtsm("proposals", "--images", imgs, "--out", tmp_path / "props", "--method",
                      "felzenszwalb", "--max", 150, "--viz", 4, "-q")
    assert code == 0, text
    assert _pngs(tmp_path / "props/viz") == PNGS  # x.jpg and x.png: two pictures

    run = tmp_path / "run"
    code, text = jtsm("mine", "--dataset", tree, "--images", imgs, "--proposals",
                      tmp_path / "props", "--out", run, "-q",
                      *[a for t in TINY for a in ("--set", t)])
    assert code == 0, text
    mined = json.loads((run / "mined/panoptic.json").read_text())
    assert [a["file_name"] for a in mined["annotations"]] == PNGS
    assert _pngs(run / "mined/panoptic") == PNGS

    code, text = jtsm("relabel", "--run", run, "--images", imgs, "--out", tmp_path / "pseudo",
                      "--evidence", "none", "-q")
    assert code == 0, text
    assert _pngs(tmp_path / "pseudo/panoptic") == PNGS
    pseudo = load_panoptic_json(tmp_path / "pseudo/panoptic.json")
    for im in pseudo.images:  # every PNG agrees with its own segments_info
        pseudo.read(im["id"], complete=True)

    pred = tmp_path / "pred"
    code, text = jtsm("predict", "--run", run, "--images", imgs, "--dataset", tree, "--out",
                      pred, "--viz", 4)
    assert code == 0, text
    assert "Predicted 4 images" in text
    assert _pngs(pred / "panoptic") == PNGS
    assert _pngs(pred / "viz") == PNGS
    assert sorted(p.relative_to(pred / "viz").as_posix() for p in (pred / "viz").rglob("*.json")
                  ) == ["a/img.json", "b/img.json", "x.json", "x.png.json"]

    # eval reads PNGs in subfolders of both folders
    code, text = jtsm("eval", "--metric", "pq", "--gt", tree, "--pred", pred / "panoptic.json",
                      "--json")
    assert code == 0, text
    assert json.loads(text[text.index("{"):])["All"]["n"] >= 1


def test_viz_panels_of_folders_and_double_underscores_differ(tmp_path, rel_data):
    names = ["a__b/c.jpg", "a/b__c.jpg"]
    tree = _tree(rel_data, tmp_path, names)
    code, text = jtsm("viz", "--panoptic", tree, "--images", tmp_path / "imgs", "--out",
                      tmp_path / "viz")
    assert code == 0, text
    assert "Drew 2 panels" in text
    assert _pngs(tmp_path / "viz") == ["a/b__c.png", "a__b/c.png"]


def test_readers_follow_subfolders_and_refuse_dotdot(tmp_path, rel_data):
    tree = _tree(rel_data, tmp_path, NAMES)
    d = json.loads(tree.read_text())
    ds = load_panoptic_json(tree)
    assert ds.png_path(d["images"][0]["id"]) == (tmp_path / "tree/a/img.png").resolve()
    for im in ds.images:
        ds.read(im["id"], complete=True)
    # a prediction that names a PNG outside its folder is refused, nothing read there
    shutil.copy(tmp_path / "tree/x.png", tmp_path / "outside.png")
    d["annotations"][2]["file_name"] = "../outside.png"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    shutil.copytree(tmp_path / "tree", tmp_path / "bad")
    seg = ds.read(d["images"][0]["id"])
    thing = next(s for s in seg.segments if ds.categories.isthing(s["category_id"]))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": d["images"][0]["id"], "score": 0.9,
                                    "category_id": thing["category_id"],
                                    "segmentation": mask_to_rle(seg.ids == thing["id"])}]))
    for metric, pred in (("pq", tree), ("ap", results)):
        code, text = jtsm("eval", "--metric", metric, "--gt", bad, "--pred", pred)
        assert code == 1 and "escapes the folder" in text and "Traceback" not in text, text
    code, text = jtsm("eval", "--metric", "pq", "--gt", tree, "--pred", bad)
    assert code == 1 and "'../outside.png' escapes the folder" in text, text


@pytest.mark.parametrize("names, both", [
    (["a/./x.jpg", "a/x.jpg"], ("a/./x.jpg", "a/x.jpg")),
    (["img", "img.jpg"], ("img", "img.jpg")),
])
def test_names_no_output_can_tell_apart_are_refused_naming_both(tmp_path, rel_data, rel_run,
                                                                 names, both):
    images = tmp_path / "imgs"
    (images / "a").mkdir(parents=True)
    recs = []
    for i, name in enumerate(names):
        shutil.copy(rel_data / "images/val_000000.jpg", images / name)
        recs.append({"id": i + 1, "file_name": name, "height": 64, "width": 72})
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"images": recs, "annotations": [],
                              "categories": [{"id": 1, "name": "a"}]}))
    code, text = jtsm("predict", "--run", rel_run, "--images", images, "--dataset", ds,
                      "--out", tmp_path / "pred")
    assert code == 1, text
    assert f"{both[0]!r} and {both[1]!r} would both write the output" in text
    assert not (tmp_path / "pred").exists()
