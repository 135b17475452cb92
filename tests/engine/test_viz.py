"""Panels a person can read: outlines, per-instance shades, names, titles, legend."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import jtsm_cli.viz as viz_cli
from jtsm.engine.panoptic_viz import (
    MIN_SCORE,
    MIN_SIDE,
    MIN_TEXT_PX,
    check_min_score,
    class_colour,
    colourise,
    draw_panel,
    instance_colour,
    text_style,
)
from jtsm.errors import DataError, JtsmError
from jtsm.structures import PanopticSeg
from jtsm_cli.main import cli

CATS = [{"id": 1, "name": "cat", "isthing": 1}, {"id": 2, "name": "dog", "isthing": 1},
        {"id": 7, "name": "grass", "isthing": 0}]


def _seg(h=40, w=60):
    ids = np.full((h, w), 3)
    ids[5:20, 5:25] = 1
    ids[5:20, 30:55] = 2
    segs = [{"id": 1, "category_id": 1, "score": 0.9}, {"id": 2, "category_id": 1},
            {"id": 3, "category_id": 7}, {"id": 4, "category_id": 2}]  # dog: no pixels
    return PanopticSeg(ids, segs)


def _has_colour(img, rgb):
    return bool(np.all(img == np.asarray(rgb, np.uint8)[None, None], axis=2).any())


def test_instances_of_a_class_get_their_own_shades_and_stuff_its_colour():
    image = np.full((40, 60, 3), 128, np.uint8)
    out = colourise(image, _seg(), alpha=1.0, categories=CATS)
    a, b, g = out[12, 15], out[12, 40], out[30, 30]  # inside each segment, off the outline
    assert np.array_equal(a, instance_colour(1, 0).astype(np.uint8))
    assert np.array_equal(b, instance_colour(1, 1).astype(np.uint8))
    assert not np.array_equal(a, b)
    assert np.array_equal(g, class_colour(7).astype(np.uint8))
    # outlined: white halo on the boundary between the two cats' neighbours
    assert (out[4, 5:25] == 255).all() or (out[5, 5:25] == 255).all()


def test_panel_titles_legend_and_labels():
    image = np.full((40, 60, 3), 128, np.uint8)
    gt = PanopticSeg(np.where(_seg().ids == 2, 4, _seg().ids), _seg().segments)  # a dog
    panel, info = draw_panel(image, _seg(), gt, CATS)
    assert info["titles"] == ["image", "prediction", "ground truth"]
    assert info["legend"] == {"prediction": ["cat", "grass"],
                              "ground truth": ["cat", "grass", "dog"]}
    s = info["scale"]
    assert s > 1  # a small image is drawn large enough to read
    w = round(60 * s)
    assert panel.shape[1] == 3 * w + 2 * 6
    strip = panel[-40:]
    for cid in (1, 2, 7):  # a swatch of each class present
        assert _has_colour(strip, class_colour(cid).astype(np.uint8))
    pred_only, info = draw_panel(image, _seg(), None, CATS)
    assert info["legend"] == {"prediction": ["cat", "grass"]}
    assert not _has_colour(pred_only[-40:], class_colour(2).astype(np.uint8))  # no dog
    # the titles are written in the band above the pictures
    top = pred_only[:20]
    assert (top < 100).any()
    # a name box (dark grey) is drawn on the segments
    assert _has_colour(pred_only, (30, 30, 30))


def test_viz_command_writes_panels_and_legends(tmp_path, synth_dir):
    gt = synth_dir / "annotations" / "panoptic_val.json"
    out = tmp_path / "viz"
    r = CliRunner().invoke(cli, ["viz", "--panoptic", str(gt), "--images",
                                 str(synth_dir / "images"), "--gt", str(gt), "--out", str(out),
                                 "--limit", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["panels"] == 2
    d = json.loads(gt.read_text())
    names = {c["id"]: c["name"] for c in d["categories"]}
    for im, ann in list(zip(d["images"], d["annotations"]))[:2]:
        stem = im["file_name"].rsplit(".", 1)[0].replace("/", "__")
        info = json.loads((out / f"{stem}.json").read_text())
        want = {names[s["category_id"]] for s in ann["segments_info"]}
        # the json is a dataset: titled ground truth, like the --gt column beside it
        assert info["titles"] == ["image", "ground truth", "ground truth"]
        assert set(info["legend"]["ground truth"]) == want
        assert set(info["legend"]["ground truth (3)"]) == want
        assert (out / f"{stem}.png").is_file()
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(cli, ["viz", "--panoptic", str(gt), "--images", str(tmp_path / "empty"),
                                 "--out", str(out)])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "no such image" in lines[0], r.output


# --- segments below a score are not drawn ---------------------------------------------------

def _scored(h=40, w=60):
    """A confident cat, a near-zero dog, and scoreless grass."""
    ids = np.full((h, w), 3)
    ids[5:20, 5:25] = 1
    ids[5:20, 30:55] = 2
    segs = [{"id": 1, "category_id": 1, "score": 0.9}, {"id": 2, "category_id": 2, "score": 0.05},
            {"id": 3, "category_id": 7}]
    return PanopticSeg(ids, segs)


def _picture(panel, info, k):
    x0, y0, x1, y1 = info["boxes"][k]
    return panel[y0:y1, x0:x1]


def test_segments_below_min_score_are_left_as_the_plain_image():
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    panel, info = draw_panel(image, _scored(), None, CATS)  # the default threshold
    assert info["min_score"] == MIN_SCORE == 0.3
    assert info["hidden"] == {"prediction": 1}
    assert info["legend"] == {"prediction": ["cat", "grass"]}  # no dog
    assert info["notes"] == ["1 segment below score 0.30 hidden"]
    plain, drawn = _picture(panel, info, 0), _picture(panel, info, 1)
    s = info["scale"]
    dog = (slice(round(8 * s), round(17 * s)), slice(round(33 * s), round(52 * s)))
    cat = (slice(round(8 * s), round(17 * s)), slice(round(8 * s), round(22 * s)))
    grass = (slice(round(25 * s), round(38 * s)), slice(round(2 * s), round(58 * s)))
    # the dog's pixels are the image's (no colour, no outline, no label)
    assert np.array_equal(drawn[dog], plain[dog])
    assert not np.array_equal(drawn[cat], plain[cat])  # the cat is painted
    assert not np.array_equal(drawn[grass], plain[grass])  # scoreless grass is painted
    # the legend strip says it, in grey under the pictures
    strip = panel[info["boxes"][0][3]:]
    assert _has_colour(strip, (90, 90, 90))

    every, info0 = draw_panel(image, _scored(), None, CATS, min_score=0)
    assert info0["hidden"] == {"prediction": 0} and info0["notes"] == []
    assert not np.array_equal(_picture(every, info0, 1)[dog], plain[dog])
    assert info0["legend"] == {"prediction": ["cat", "dog", "grass"]}
    assert not _has_colour(every[info0["boxes"][0][3]:], (90, 90, 90))

    # all below: every scored segment hidden, counted; a column of labels is never thresholded
    _, info1 = draw_panel(image, _scored(), _scored(), CATS, min_score=1.0,
                          labels=(False, True))
    assert info1["hidden"] == {"prediction": 2}
    assert info1["legend"] == {"prediction": ["grass"], "ground truth": ["cat", "dog", "grass"]}
    assert info1["notes"] == ["prediction: 2 segments below score 1.00 hidden"]


def test_min_score_must_be_a_finite_number_in_0_1():
    for bad in (float("nan"), float("inf"), -0.01, 1.5, "high", None):
        with pytest.raises(JtsmError, match=r"^--min-score .*(\[0, 1\])"):
            check_min_score(bad, "--min-score")
    assert check_min_score("0.5") == 0.5 and check_min_score(0) == 0.0
    image = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(JtsmError, match="min_score nan"):
        draw_panel(image, _scored(), None, CATS, min_score=float("nan"))
    bad = PanopticSeg(_scored().ids, [dict(s, score="x") if s["id"] == 1 else s
                                      for s in _scored().segments])
    with pytest.raises(DataError, match="segment 1: score 'x' is not a number"):
        draw_panel(image, bad, None, CATS)
    assert viz_cli.MIN_SCORE == MIN_SCORE  # the CLI's default is the library's


@pytest.mark.parametrize("command", ["viz", "predict"])
@pytest.mark.parametrize("value", ["nan", "1.5", "-1", "inf"])
def test_bad_min_score_is_one_line_naming_the_option(tmp_path, synth_dir, command, value):
    gt = str(synth_dir / "annotations" / "panoptic_val.json")
    args = (["viz", "--panoptic", gt, "--images", str(synth_dir / "images")]
            if command == "viz" else ["predict", "--run", str(tmp_path), "--images",
                                      str(synth_dir / "images"), "--viz", "1"])
    r = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "o"), "--min-score", value])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert lines[0].startswith(f"Error: --min-score {float(value)!r}: must be a finite number")
    assert not (tmp_path / "o").exists()


# --- text sized to the picture --------------------------------------------------------------

def _label_box_heights(picture, unlabelled):
    """Heights of the label boxes: the parts of a drawn picture that differ from the same
    picture without labels (a box and the text on it are one component)."""
    diff = np.any(picture != unlabelled, axis=2).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(diff, connectivity=8)
    return sorted(int(stats[i, cv2.CC_STAT_HEIGHT]) for i in range(1, n))


@pytest.mark.parametrize("side", [128, 1024])
def test_label_text_is_the_same_share_of_a_small_and_a_large_picture(side):
    image = np.full((side, side, 3), 128, np.uint8)
    ids = np.ones((side, side), np.int64)
    ids[: side // 2] = 2
    seg = PanopticSeg(ids, [{"id": 1, "category_id": 1, "score": 0.9},
                            {"id": 2, "category_id": 7, "score": 0.8}])
    panel, info = draw_panel(image, seg, None, CATS)
    x0, y0, x1, y1 = info["boxes"][1]
    ph, pw = y1 - y0, x1 - x0
    assert ph >= MIN_SIDE  # a small image is enlarged, a large one reduced
    scale, th = text_style(ph, pw)
    (_, text_h), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, th)
    assert 0.03 <= text_h / ph <= 0.05, (side, text_h, ph)
    assert text_h >= MIN_TEXT_PX
    # the drawn label boxes are that text's height (+ its baseline and a 2 px margin)
    big = np.ones((ph, pw), np.int64)
    big[: ph // 2] = 2
    unlabelled = colourise(np.full((ph, pw, 3), 128, np.uint8), PanopticSeg(big, seg.segments),
                           categories=CATS)
    heights = _label_box_heights(_picture(panel, info, 1), unlabelled)
    # two labels ("cat 0.90", "grass 0.80"), each box 2 px around its text, descenders in
    assert heights == [text_h + base + 3] * 2
    # titles: larger than labels, and the same share of the picture at both sizes
    title_band = panel[:y0]
    rows = np.flatnonzero((title_band < 100).all(axis=2).any(axis=1))
    assert 0.035 <= (rows[-1] - rows[0] + 1) / ph <= 0.07


def test_text_style_keeps_a_readable_floor_and_grows_with_the_picture():
    sizes = [(40, 60), (96, 768), (384, 384), (768, 768)]
    px = [cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, *text_style(h, w))[0][1]
          for h, w in sizes]
    assert px[0] >= MIN_TEXT_PX and px[1] >= MIN_TEXT_PX  # tiny / thin: still readable
    assert px[3] > px[2] > px[0]
    assert abs(px[3] / 768 - px[2] / 384) < 0.005


def test_titles_of_a_tall_thin_image_stay_over_their_own_columns():
    image = np.full((1024, 128, 3), 128, np.uint8)
    seg = PanopticSeg(np.ones((1024, 128), np.int64), [{"id": 1, "category_id": 7}])
    panel, info = draw_panel(image, seg, seg, CATS)
    boxes = info["boxes"]
    band = (panel[:boxes[0][1]] < 200).any(axis=2)  # title ink
    inked = np.flatnonzero(band.any(axis=0))
    assert inked.size
    for x in inked:  # every ink column lies over one picture (or its widened column)
        assert any(b[0] - 6 <= x < b[2] + 6 for b in boxes), x
    for b, nxt in zip(boxes, boxes[1:]):  # the gaps between columns stay white
        gap = band[:, b[2]:nxt[0]]
        assert gap.size and not gap.any()
    for b in boxes:  # each column has its title
        assert band[:, b[0]:b[2]].any()


# --- the json's column is titled after what made it -----------------------------------------

def _copy_json(src, folder, score=None, meta=None):
    """``folder/panoptic.json`` + its PNGs from ``src``; every segment given ``score`` (a
    function of the segment index) when set; ``folder/meta.json`` when ``meta``."""
    folder.mkdir(parents=True, exist_ok=True)
    d = json.loads(src.read_text())
    if score is not None:
        for ann in d["annotations"]:
            for k, s in enumerate(ann["segments_info"]):
                s["score"] = score(k)
    (folder / "panoptic.json").write_text(json.dumps(d))
    shutil.copytree(src.with_suffix(""), folder / "panoptic")
    if meta is not None:
        (folder / "meta.json").write_text(json.dumps(meta))
    return folder / "panoptic.json", d


def _viz(pan, synth_dir, out, *extra):
    r = CliRunner().invoke(cli, ["viz", "--panoptic", str(pan), "--images",
                                 str(synth_dir / "images"), "--out", str(out), "--limit", "2",
                                 "--json", *extra])
    assert r.exit_code == 0, r.output
    infos = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(infos) == 2
    return json.loads(r.stdout), infos


def test_viz_titles_the_column_after_what_made_the_json(tmp_path, synth_dir):
    gt = synth_dir / "annotations" / "panoptic_val.json"
    low = lambda k: 0.1 if k == 0 else 0.9  # noqa: E731 - the first segment near zero
    # pseudo labels (relabel): titled so, drawn whole although scored
    pseudo, _ = _copy_json(gt, tmp_path / "pseudo", low, {"stage": "relabel"})
    summary, infos = _viz(pseudo, synth_dir, tmp_path / "v1")
    assert summary["title"] == "pseudo labels" and summary["hidden"] == 0
    for info in infos:
        assert info["titles"] == ["image", "pseudo labels"] and info["hidden"] == {}
    # predictions: titled so, the near-zero segment hidden and counted
    pred, d = _copy_json(gt, tmp_path / "pred", low, {"stage": "predict"})
    summary, infos = _viz(pred, synth_dir, tmp_path / "v2")
    assert summary["title"] == "prediction"
    assert [i["hidden"] for i in infos] == [{"prediction": 1}] * 2 and summary["hidden"] == 2
    assert all(i["min_score"] == 0.3 for i in infos)
    # a mining run's mined segments
    run = tmp_path / "run"
    mined, _ = _copy_json(gt, run / "mined", low)
    (run / "meta.json").write_text(json.dumps({"stage": "mine"}))
    assert _viz(mined, synth_dir, tmp_path / "v3")[0]["title"] == "mined segments"
    # a dataset (no stage recorded, no scores), beside itself as --gt
    summary, infos = _viz(gt, synth_dir, tmp_path / "v4", "--gt", str(gt))
    assert summary["title"] == "ground truth"
    assert infos[0]["titles"] == ["image", "ground truth", "ground truth"]
    # scored, nothing recorded: neutral; --title overrides any of them
    loose, _ = _copy_json(gt, tmp_path / "loose", low)
    assert _viz(loose, synth_dir, tmp_path / "v5")[0]["title"] == "segments"
    summary, infos = _viz(pseudo, synth_dir, tmp_path / "v6", "--title", "GrabCut")
    assert summary["title"] == "GrabCut" and infos[0]["titles"][1] == "GrabCut"


def test_viz_names_the_json_of_a_score_that_is_not_a_number(tmp_path, synth_dir):
    gt = synth_dir / "annotations" / "panoptic_val.json"
    pred, d = _copy_json(gt, tmp_path / "pred", lambda k: "high", {"stage": "predict"})
    r = CliRunner().invoke(cli, ["viz", "--panoptic", str(pred), "--images",
                                 str(synth_dir / "images"), "--out", str(tmp_path / "v")])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1, r.output
    assert str(pred) in lines[0] and d["images"][0]["file_name"] in lines[0]
    assert "score 'high' is not a number" in lines[0]


# --- predict --viz passes --min-score through -----------------------------------------------

def test_predict_viz_hides_below_min_score(tmp_path, synth_dir, synth_proposals):
    from jtsm.config import load_config
    from jtsm.engine.mine import run_mine

    tiny = ["solver.max_iter=2", "solver.ims_per_batch=2", "solver.warmup_iters=1",
            "solver.steps=[1]", "mining.fc_dim=16", "mining.oicr_heads=1",
            "input.train_scales=[64]", "input.test_scales=[64]", "input.max_proposals=50",
            "proposals=felzenszwalb", "segments.presence_threshold=0"]  # untrained: all present
    run = tmp_path / "run"
    run_mine(load_config(overrides=tiny), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, run, write_outputs=False)
    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copy(synth_dir / "images" / "val_000000.jpg", images)
    found = {}
    for s in ("0", "1"):
        out = tmp_path / f"pred{s}"
        r = CliRunner().invoke(cli, ["predict", "--run", str(run), "--images", str(images),
                                     "--proposals", str(synth_proposals), "--out", str(out),
                                     "--viz", "1", "--min-score", s, "--quiet"])
        assert r.exit_code == 0, r.output
        found[s] = json.loads((out / "viz" / "val_000000.json").read_text())
        pred = json.loads((out / "panoptic.json").read_text())
    shown = len(pred["annotations"][0]["segments_info"])  # every predicted segment has pixels
    assert shown > 0
    assert found["0"]["min_score"] == 0.0 and found["0"]["hidden"] == {"prediction": 0}
    assert found["1"]["min_score"] == 1.0 and found["1"]["hidden"] == {"prediction": shown}
    assert found["1"]["legend"] == {"prediction": []}
