import json

import numpy as np
import pytest
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.engine.mine import run_mine
from jtsm.engine.relabel import relabel_image
from jtsm.plugins import get_evidence
from jtsm.structures import CategoryMap, PanopticSeg
from jtsm_cli.main import cli

TINY = ["solver.max_iter=3", "solver.ims_per_batch=1", "mining.fc_dim=16",
        "mining.oicr_heads=1", "input.train_scales=[64]", "input.test_scales=[64]",
        "input.max_proposals=60"]
CATS = CategoryMap.from_coco([{"id": 1, "name": "disc", "isthing": 1},
                              {"id": 2, "name": "grass", "isthing": 0}])


@pytest.fixture(scope="module")
def mined_run(tmp_path_factory, synth_dir, synth_proposals):
    out = tmp_path_factory.mktemp("mined")
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, out)
    return out


def _scene():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 50, (40, 50, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:40, 0:50]
    disc = (yy - 20) ** 2 + (xx - 25) ** 2 < 10**2
    img[disc] = 220
    ids = np.full((40, 50), 2)
    # the mined segment: a cross spanning the disc, so its box covers the disc
    core = disc & ((abs(yy - 20) <= 2) | (abs(xx - 25) <= 2))
    ids[core] = 1
    return img, disc, core, PanopticSeg(ids, [{"id": 1, "category_id": 1, "score": 0.9},
                                              {"id": 2, "category_id": 2, "score": 0.6}])


def test_none_evidence_keeps_the_mined_segmentation():
    img, _, _, mined = _scene()
    out = relabel_image(img, mined, CATS, get_evidence("none"))
    assert np.array_equal(out.ids == 1, mined.ids == 1)
    assert [s["score"] for s in out.segments] == [0.9, 0.6]


def test_grabcut_fills_the_thing_within_its_box_and_keeps_its_firm_pixels():
    """GrabCut re-shapes a segment inside its own box (outside is firm background)."""
    img, disc, core, mined = _scene()
    out = relabel_image(img, mined, CATS, get_evidence("grabcut"))
    thing = out.ids == [s["id"] for s in out.segments if s["category_id"] == 1][0]
    assert thing[core].all()
    assert (thing & disc).sum() / (thing | disc).sum() > 0.9 > core.sum() / disc.sum()


def test_relabel_command_resume_and_errors(tmp_path, mined_run, synth_dir, synth_proposals):
    args = ["relabel", "--run", str(mined_run), "--images", str(synth_dir / "images"),
            "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
            "--proposals", str(synth_proposals), "--out", str(tmp_path / "pseudo"), "--json"]
    r = CliRunner().invoke(cli, args + ["--evidence", "superpixel-snap"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["relabelled"] == 12
    pseudo = load_panoptic_json(tmp_path / "pseudo/panoptic.json")
    for im in pseudo.images:
        pseudo.read(im["id"])  # PNG and json agree
    # kill-like loss of one image's outputs: the rerun does that image only
    png = sorted((tmp_path / "pseudo/panoptic").glob("*.png"))[0]
    png.unlink()
    r = CliRunner().invoke(cli, args + ["--evidence", "superpixel-snap"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["relabelled"] == 1
    r = CliRunner().invoke(cli, args + ["--evidence", "nope"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith("Error: unknown evidence method 'nope'")


def test_shards_and_workers_give_the_same_pseudo_labels(tmp_path, mined_run, synth_dir,
                                                        synth_proposals):
    base = ["relabel", "--run", str(mined_run), "--images", str(synth_dir / "images"),
            "--proposals", str(synth_proposals), "--evidence", "superpixel-snap", "--json"]
    r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "one"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    first = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "sh"), "--workers", "2",
                                            "--shard", "0/2"])
    assert first.exit_code == 0, first.output
    res = json.loads(first.output)
    assert res["complete"] is False and res["relabelled"] == 6 and res["missing"] == 6
    assert not (tmp_path / "sh/panoptic.json").exists()
    second = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "sh"), "--workers", "2",
                                             "--shard", "1/2"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["complete"] is True
    a = load_panoptic_json(tmp_path / "one/panoptic.json")
    b = load_panoptic_json(tmp_path / "sh/panoptic.json")
    for im in a.images:
        sa, sb = a.read(im["id"]), b.read(im["id"])
        assert np.array_equal(sa.ids, sb.ids) and sa.segments == sb.segments
    r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "x"), "--shard", "3/2"])
    assert r.exit_code == 1 and "--shard '3/2'" in r.output


def test_max_images_relabels_a_seeded_sample_the_same_as_a_full_run(tmp_path, mined_run, synth_dir,
                                                                     synth_proposals):
    base = ["relabel", "--run", str(mined_run), "--images", str(synth_dir / "images"),
            "--proposals", str(synth_proposals), "--evidence", "superpixel-snap", "--json",
            "--workers", "1"]
    full = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "all")])
    assert full.exit_code == 0, full.output
    r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "s5"), "--max-images", "5"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["relabelled"] == 5 and res["sampled_from"] == 12 and res["complete"] is True
    a = load_panoptic_json(tmp_path / "all/panoptic.json")
    s = load_panoptic_json(tmp_path / "s5/panoptic.json")
    ids = [im["id"] for im in s.images]
    assert len(set(ids)) == 5 and set(ids) < {im["id"] for im in a.images}
    assert ids == [im["id"] for im in a.images if im["id"] in set(ids)]  # mined order kept
    assert len(list((tmp_path / "s5/panoptic").glob("*.png"))) == 5
    for i in ids:  # a sampled image gets exactly the labels a full run gives it
        sa, ss = a.read(i), s.read(i)
        assert np.array_equal(sa.ids, ss.ids) and sa.segments == ss.segments
    again = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "s5"), "--max-images", "5"])
    assert json.loads(again.output)["relabelled"] == 0  # the same sample: nothing left to do
    other = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "o"), "--max-images", "5",
                                            "--seed", "1"])
    assert other.exit_code == 0, other.output
    assert [im["id"] for im in load_panoptic_json(tmp_path / "o/panoptic.json").images] != ids
    r = CliRunner().invoke(cli, base + ["--out", str(tmp_path / "z"), "--max-images", "0"])
    assert r.exit_code == 2 and "--max-images" in r.output  # a usage error, as click gives
