"""A user's own photos and a CSV of their tags, through every stage to readable pictures.

Four photos (skimage's astronaut, coffee, chelsea, rocket; the rocket stored on its side as a
phone does, with EXIF orientation 6) and a tags CSV with one stuff class go, from a working
directory outside the checkout, through ``data tags -> proposals -> mine -> relabel -> refine
-> predict --viz -> viz``. Sizes are small and training is a few iterations: this checks the
path a user walks, not what the model learns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.engine.viz import panel_name
from jtsm_cli.main import cli

LONG_SIDE = 112
TAGS = {"astronaut.png": "person;flag;background", "coffee.png": "cup;background",
        "chelsea.png": "cat;background", "rocket.jpg": "rocket background"}
TINY = ["proposals=felzenszwalb", "tag_warmup.iters=4", "tag_warmup.batch=2", "tag_warmup.items=2",
        "tag_warmup.whiten_images=4", "solver.max_iter=4", "solver.log_period=2",
        "solver.warmup_iters=1", "solver.steps=[3]", "solver.checkpoint_period=4",
        "mining.fc_dim=32", "mining.oicr_heads=2", "input.train_scales=[96]",
        "input.test_scales=[96]", "input.max_proposals=80"]
# refine costs ~4x a mining iteration: two iterations show the path
REFINE = [*TINY, "solver.max_iter=2", "solver.steps=[1]", "solver.checkpoint_period=2"]


def _small(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = LONG_SIDE / max(h, w)
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _invoke(*args: str) -> str:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, f"jtsm {' '.join(map(str, args))}\n{r.output}"
    return r.stdout


def _present(ds, image_id: int, min_score: float = 0.0) -> set[str]:
    """Class names of the segments that have pixels in an image of a panoptic json (and a
    score of at least ``min_score``, when they have one)."""
    seg = ds.read(image_id)
    ids = set(np.unique(seg.ids).tolist())
    names = {int(c["id"]): c["name"] for c in ds.categories.categories}
    return {names[int(s["category_id"])] for s in seg.segments
            if int(s["id"]) in ids and s.get("score", 1.0) >= min_score}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run every stage once from a fresh working directory; return its paths."""
    skimage_data = pytest.importorskip("skimage.data")
    work = tmp_path_factory.mktemp("own_photos")
    old_cwd, old_umask = Path.cwd(), os.umask(0o022)
    os.chdir(work)
    try:
        photos, upright = Path("photos"), Path("upright")
        photos.mkdir()
        upright.mkdir()
        for name in ("astronaut", "coffee", "chelsea"):
            Image.fromarray(_small(getattr(skimage_data, name)())).save(photos / f"{name}.png")
        rocket = _small(skimage_data.rocket())
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned 90 degrees clockwise: stored turned anticlockwise
        Image.fromarray(np.ascontiguousarray(np.rot90(rocket, 1))).save(
            photos / "rocket.jpg", quality=95, exif=exif)
        # the upright copy: the same decoded pixels, turned by hand (lossless PNG)
        stored = cv2.imread(str(photos / "rocket.jpg"),
                            cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        Image.fromarray(np.ascontiguousarray(np.rot90(stored[..., ::-1], -1))).save(
            upright / "rocket.png")
        Path("tags.csv").write_text("file,tags\n" + "".join(
            f"{k},{v}\n" for k, v in TAGS.items()))
        sets = [a for o in TINY for a in ("--set", o)]
        refine_sets = [a for o in REFINE for a in ("--set", o)]
        _invoke("data", "tags", "tags.csv", "--images", "photos", "--out", "labels.json",
                "--stuff", "background")
        _invoke("proposals", "--images", "photos", "--out", "props", "--method",
                "felzenszwalb", "--workers", "1", "-q")
        _invoke("mine", "--dataset", "labels.json", "--images", "photos", "--proposals",
                "props", "--out", "runs/mine", "--config", "synth", *sets, "--device", "cpu")
        _invoke("relabel", "--run", "runs/mine", "--images", "photos", "--proposals", "props",
                "--out", "runs/pseudo", "--workers", "1", "-q")
        _invoke("refine", "--run", "runs/mine", "--pseudo", "runs/pseudo/panoptic.json",
                "--images", "photos", "--out", "runs/refine", *refine_sets, "--device", "cpu")
        _invoke("predict", "--run", "runs/refine", "--images", "photos", "--out", "pred",
                "--viz", "4", "--device", "cpu", "-q")
        _invoke("predict", "--run", "runs/refine", "--images", "upright/rocket.png", "--out",
                "pred_upright", "--device", "cpu", "-q")
        _invoke("viz", "--panoptic", "pred/panoptic.json", "--images", "photos", "--out",
                "viz", "--gt", "runs/pseudo/panoptic.json", "-q")
    finally:
        os.chdir(old_cwd)
        os.umask(old_umask)
    return work


def test_tags_become_the_labels_json_with_displayed_sizes(pipeline):
    d = json.loads((pipeline / "labels.json").read_text())
    cats = {c["name"]: c for c in d["categories"]}
    assert set(cats) == {"person", "flag", "cup", "cat", "rocket", "background"}
    assert [n for n, c in cats.items() if not c["isthing"]] == ["background"]
    rocket = next(im for im in d["images"] if im["file_name"] == "rocket.jpg")
    with Image.open(pipeline / "upright" / "rocket.png") as im:
        w, h = im.size
    with Image.open(pipeline / "photos" / "rocket.jpg") as im:
        stored = im.size  # (width, height) of the pixels as stored: on its side
    assert stored == (h, w) and h != w
    assert (rocket["height"], rocket["width"]) == (h, w)  # as a viewer shows it
    assert {cats["rocket"]["id"], cats["background"]["id"]} == set(rocket["labels"])


def test_the_rotated_photo_lines_up_with_its_upright_copy(pipeline):
    with Image.open(pipeline / "upright" / "rocket.png") as im:
        w, h = im.size
    for json_path in ("runs/mine/mined/panoptic.json", "runs/pseudo/panoptic.json",
                      "pred/panoptic.json"):
        ds = load_panoptic_json(pipeline / json_path)
        rec = next(im for im in ds.images if im["file_name"] == "rocket.jpg")
        assert (rec["height"], rec["width"]) == (h, w), json_path
        assert ds.read(int(rec["id"])).ids.shape == (h, w), json_path
    pred = load_panoptic_json(pipeline / "pred/panoptic.json")
    up = load_panoptic_json(pipeline / "pred_upright/panoptic.json")
    a = pred.read(next(int(im["id"]) for im in pred.images if im["file_name"] == "rocket.jpg"))
    b = up.read(int(up.images[0]["id"]))
    # the same pixels, the same run: the same segments in the same places
    assert np.array_equal(a.ids, b.ids)
    assert [s["category_id"] for s in a.segments] == [s["category_id"] for s in b.segments]


def test_logs_and_viz_legends(pipeline):
    for run in ("runs/mine", "runs/refine"):
        log = (pipeline / run / "log.txt").read_text()
        assert " it/s ETA " in log, run
    pred = load_panoptic_json(pipeline / "pred/panoptic.json")
    pseudo = load_panoptic_json(pipeline / "runs/pseudo/panoptic.json")
    pseudo_ids = {im["file_name"]: int(im["id"]) for im in pseudo.images}
    assert len(pred.images) == 4
    for im in pred.images:
        # a panel is named as the image's PNG (x.jpg -> x.png, x.png -> x.png.png)
        stem = panel_name(im["file_name"])[: -len(".png")]
        for folder in ("pred/viz", "viz"):  # predict --viz and jtsm viz
            info = json.loads((pipeline / folder / f"{stem}.json").read_text())
            want = _present(pred, int(im["id"]), info["min_score"])  # the rest hidden
            assert set(info["legend"]["prediction"]) == want, (folder, stem)
            assert len(info["legend"]["prediction"]) == len(want)
            assert (pipeline / folder / f"{stem}.png").is_file()
        info = json.loads((pipeline / "viz" / f"{stem}.json").read_text())
        assert info["titles"] == ["image", "prediction", "ground truth"]
        assert set(info["legend"]["ground truth"]) == _present(pseudo,
                                                               pseudo_ids[im["file_name"]])


def test_outputs_follow_the_umask_and_runs_work_from_another_directory(pipeline, tmp_path,
                                                                       monkeypatch):
    modes = {p.relative_to(pipeline).as_posix(): p.stat().st_mode & 0o777
             for p in pipeline.rglob("*") if p.is_file()}
    wrong = {k: oct(m) for k, m in modes.items() if m != 0o644}
    assert not wrong, f"not 0644 under umask 022: {sorted(wrong.items())[:5]}"
    monkeypatch.chdir(tmp_path)  # recorded inputs (the mining run's proposals) still found
    r = CliRunner().invoke(cli, ["predict", "--run", str(pipeline / "runs/refine"), "--images",
                                 str(pipeline / "photos" / "coffee.png"), "--out",
                                 "again", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["refine", "--run", str(pipeline / "runs/mine"), "--pseudo",
                                 str(pipeline / "runs/pseudo/panoptic.json"), "--images",
                                 str(pipeline / "photos"), "--out", "refine2", "--device", "cpu",
                                 "-q", *[a for o in REFINE for a in ("--set", o)]])
    assert r.exit_code == 0, r.output
