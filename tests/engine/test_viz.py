"""Panels a person can read: outlines, per-instance shades, names, titles, legend."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from jtsm.engine.panoptic_viz import class_colour, colourise, draw_panel, instance_colour
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
        assert set(info["legend"]["prediction"]) == want == set(info["legend"]["ground truth"])
        assert (out / f"{stem}.png").is_file()
    r = CliRunner().invoke(cli, ["viz", "--panoptic", str(gt), "--images", str(tmp_path),
                                 "--out", str(out)])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and "no such image" in lines[0], r.output
