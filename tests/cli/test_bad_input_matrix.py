"""The bad-input matrix of issue 9: one test per (command, bad input) row.

Every row runs the real command (click's CliRunner, in process) and checks what the user sees:
one ``Error: ...`` line on stderr naming the file or value at fault and exit code 1, no
traceback and never the catch-all "rerun with --debug" message of an exception nobody named;
or, where skipping is the documented behaviour, a warning and a count. The README's
"Reliability" table lists the same rows.

Sections: data, proposals, mine, relabel, refine, predict, eval.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from badfiles import (
    VARIANTS,
    edit_json,
    evil_checkpoint,
    make_corrupt,
    make_damaged_png,
    make_png_bomb,
    make_truncated,
    make_zero_byte,
    ok,
    one_line_error,
    resized,
    write_variant,
)
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.data.coco_panoptic import read_panoptic_png
from jtsm.engine.mine import run_mine
from jtsm.proposals.store import ProposalStore, load_proposals
from jtsm.structures import ProposalSet
from jtsm_cli.main import cli

H, W = 96, 112  # size of the synth_dir images


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _copy_images(synth_dir: Path, dst: Path, names: list[str]) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(synth_dir / "images" / n, dst / n)
    return dst


# =============================================================================================
# data
# =============================================================================================
def test_data_synth_value_out_of_range_is_a_usage_error(tmp_path):
    r = run("data", "synth", tmp_path / "d", "--train", "-1")
    assert r.exit_code == 2 and "--train" in r.output and "Traceback" not in r.output


def test_data_voc_not_a_voc_folder(tmp_path):
    r = run("data", "voc", tmp_path, tmp_path / "o")
    one_line_error(r, tmp_path, "not a VOC2012 folder")


def _voc(tmp_path):
    import importlib.util

    path = Path(__file__).parents[1] / "data" / "conftest.py"  # make_voc lives there
    spec = importlib.util.spec_from_file_location("voc_maker", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_voc(tmp_path / "src")


def test_data_voc_corrupt_annotation_png(tmp_path):
    voc, _, _ = _voc(tmp_path)
    bad = make_truncated(voc / "SegmentationClass" / "2007_000002.png")
    r = run("data", "voc", voc, tmp_path / "o")
    one_line_error(r, bad, "cannot read annotation PNG")


def test_data_voc_image_list_with_dotdot_or_absolute_names(tmp_path):
    voc, _, _ = _voc(tmp_path)
    lst = voc / "ImageSets/Segmentation/train.txt"
    for name in ("../../../outside", "/etc/passwd"):
        lst.write_text(f"2007_000001\n{name}\n")
        r = run("data", "voc", voc, tmp_path / "o")
        one_line_error(r, lst, repr(name))
    assert not (tmp_path / "outside.jpg").exists()


def test_data_voc_corrupt_sbd_mat(tmp_path):
    voc, sbd, _ = _voc(tmp_path)
    bad = sbd / "inst" / "2008_000010.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, garbage" + bytes(200))
    r = run("data", "voc", voc, tmp_path / "o", "--sbd", sbd)
    one_line_error(r, "2008_000010")


# =============================================================================================
# proposals
# =============================================================================================
def _props(images: Path, out: Path, *extra: str, env=None):
    return run("proposals", "--images", images, "--out", out, "--method", "felzenszwalb",
               "--max", "50", "--workers", "1", "--quiet", *extra, env=env)


@pytest.fixture()
def two_images(tmp_path, synth_dir) -> Path:
    return _copy_images(synth_dir, tmp_path / "imgs", ["val_000000.jpg", "val_000001.jpg"])


def test_proposals_corrupt_truncated_and_zero_byte_images_warn_and_count(two_images, tmp_path):
    bad = [make_corrupt(two_images / "corrupt.jpg"),
           make_truncated(Path(shutil.copy(two_images / "val_000000.jpg",
                                           two_images / "trunc.jpg"))),
           make_zero_byte(two_images / "zero.png"),
           make_damaged_png(two_images / "damaged.png")]
    r = _props(two_images, tmp_path / "p")
    assert r.exit_code == 1 and isinstance(r.exception, (SystemExit, type(None)))
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("Warning: skipped")]
    assert len(warnings) == len(bad) and "Traceback" not in r.output
    for path in bad:
        assert sum(str(path) in w for w in warnings) == 1, (path, warnings)
    assert f"2 computed, 0 already done, {len(bad)} bad" in r.stdout
    assert sorted(p.name for p in (tmp_path / "p").glob("*.npz")) == [
        "val_000000.jpg.npz", "val_000001.jpg.npz"]
    assert _props(two_images, tmp_path / "p", "--skip-bad").exit_code == 0


def test_proposals_accept_grey_rgba_16bit_and_palette_images(two_images, tmp_path):
    for kind in VARIANTS:
        write_variant(two_images / "val_000000.jpg", two_images / f"{kind}.png", kind)
    r = _props(two_images, tmp_path / "p", "--json")
    ok(r)
    assert json.loads(r.stdout)["bad"] == []
    for kind in VARIANTS:
        assert load_proposals(tmp_path / "p" / f"{kind}.png.npz").image_size == (H, W)


def test_proposals_very_large_image_is_downscaled(two_images, tmp_path):
    resized(two_images / "val_000000.jpg", two_images / "big.png", 900, 1200)
    resized(two_images / "val_000000.jpg", two_images / "huge.jpg", 1800, 2400)  # 1/8 decode
    r = _props(two_images, tmp_path / "p", "--json", env={"JTSM_MAX_IMAGE_SIDE": "300"})
    ok(r)
    assert json.loads(r.stdout)["computed"] == 4
    assert load_proposals(tmp_path / "p/big.png.npz").image_size == (225, 300)
    assert load_proposals(tmp_path / "p/huge.jpg.npz").image_size == (225, 300)
    assert load_proposals(tmp_path / "p/val_000000.jpg.npz").image_size == (H, W)


def test_proposals_decompression_bomb_is_refused_not_decoded(two_images, tmp_path):
    bomb = make_png_bomb(two_images / "bomb.png", 20000, 20000)
    r = _props(two_images, tmp_path / "p")
    assert r.exit_code == 1
    warning = [ln for ln in r.stderr.splitlines() if ln.startswith("Warning")]
    assert len(warning) == 1 and str(bomb) in warning[0]
    assert "20000x20000" in warning[0] and "JTSM_MAX_IMAGE_PIXELS" in warning[0]


@pytest.mark.parametrize("text", ['{"images": [{"file_name": "val_000000.jpg"', "[1, 2]"])
def test_proposals_malformed_or_truncated_dataset_json(two_images, tmp_path, text):
    ds = tmp_path / "ds.json"
    ds.write_text(text)
    one_line_error(_props(two_images, tmp_path / "p", "--dataset", ds), ds)


@pytest.mark.parametrize("name", ["../val_000000.jpg", "/etc/passwd", "a/../../x.jpg"])
def test_proposals_dataset_file_name_escaping_the_image_folder(two_images, tmp_path, name):
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"images": [{"id": 1, "file_name": name}]}))
    one_line_error(_props(two_images, tmp_path / "p", "--dataset", ds), ds, repr(name))
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").rglob("*.npz"))


def test_proposals_option_of_the_wrong_type(two_images, tmp_path):
    r = _props(two_images, tmp_path / "p", "--opt", "k=abc")
    one_line_error(r, "k", "abc")


def test_proposals_mcg_missing_corrupt_and_other_size_files(two_images, tmp_path):
    import scipy.io

    mcg = tmp_path / "mcg"
    mcg.mkdir()
    make_corrupt(mcg / "val_000000.mat")  # val_000001.mat missing
    spx = np.ones((20, 30), np.uint16)
    cell = np.empty((1, 1), object)
    cell[0, 0] = np.array([[1]], np.uint32)
    scipy.io.savemat(mcg / "other.mat", {"superpixels": spx, "labels": cell, "scores": [[1.0]]})
    shutil.copy(two_images / "val_000000.jpg", two_images / "other.jpg")
    r = run("proposals", "--images", two_images, "--out", tmp_path / "p", "--method", "mcg",
            "--opt", f"mcg_dir={mcg}", "--workers", "1", "-q", "--json")
    assert r.exit_code == 1
    bad = {b["image"]: b["error"] for b in json.loads(r.stdout)["bad"]}
    assert set(bad) == {"val_000000.jpg", "val_000001.jpg", "other.jpg"}
    assert "val_000000.mat: cannot read MCG file" in bad["val_000000.jpg"]
    assert "val_000001.mat: no such MCG file" in bad["val_000001.jpg"]
    assert "other.mat: MCG superpixels are 30x20" in bad["other.jpg"]
    assert f"is {W}x{H}" in bad["other.jpg"]


# =============================================================================================
# mine
# =============================================================================================
MINE_SETS = ["solver.max_iter=2", "solver.ims_per_batch=1", "solver.warmup_iters=0",
             "solver.steps=[1]", "solver.checkpoint_period=1", "mining.fc_dim=16",
             "mining.oicr_heads=1", "input.train_scales=[64]", "input.test_scales=[64]",
             "input.max_proposals=40", "proposals=felzenszwalb"]


@pytest.fixture()
def mini(tmp_path, synth_dir, synth_proposals) -> SimpleNamespace:
    """Two tagged training images of synth_dir with their proposals and a labels json."""
    d = json.loads((synth_dir / "annotations/panoptic_train.json").read_text())
    recs = d["images"][:2]
    tags = {a["image_id"]: sorted({s["category_id"] for s in a["segments_info"]})
            for a in d["annotations"]}
    root = tmp_path / "mini"
    images = _copy_images(synth_dir, root / "images", [im["file_name"] for im in recs])
    props = root / "props"
    props.mkdir()
    for im in recs:
        npz = im["file_name"] + ".npz"
        shutil.copy(synth_proposals / npz, props / npz)
    labels = root / "labels.json"
    labels.write_text(json.dumps({
        "images": [{**im, "labels": tags[im["id"]]} for im in recs],
        "categories": d["categories"]}))
    ns = SimpleNamespace(root=root, images=images, props=props, labels=labels, recs=recs,
                         panoptic=synth_dir / "annotations/panoptic_train.json")

    def mine(*extra: str, dataset: Path | None = None, out: Path | None = None):
        args = ["mine", "--dataset", dataset or labels, "--images", images, "--proposals",
                props, "--out", out or root / "run", "--quiet"]
        for s in MINE_SETS:
            args += ["--set", s]
        return run(*args, *extra)

    ns.mine = mine
    ns.first = images / recs[0]["file_name"]
    ns.first_npz = props / (recs[0]["file_name"] + ".npz")
    return ns


def test_mine_truncated_json(mini):
    make_truncated(mini.labels, 0.5)
    one_line_error(mini.mine(), mini.labels, "malformed JSON")


def test_mine_malformed_json(mini):
    edit_json(mini.labels, lambda d: d.update(images={"not": "a list"}))
    one_line_error(mini.mine(), mini.labels, "images")
    edit_json(mini.labels, lambda d: d.update(images=[{"id": "x", "file_name": "a.jpg"}]))
    one_line_error(mini.mine(), mini.labels, "non-integer id 'x'")


def test_mine_unknown_category_id(mini):
    edit_json(mini.labels, lambda d: d["images"][1].update(labels=[999]))
    one_line_error(mini.mine(), mini.labels, "unknown category id 999")


def test_mine_annotation_for_an_image_not_in_images(mini, tmp_path):
    ds = Path(shutil.copy(mini.panoptic, tmp_path / "pan.json"))
    edit_json(ds, lambda d: d["annotations"][0].update(image_id=424242))
    one_line_error(mini.mine(dataset=ds), ds, "image_id 424242 is not in images")


def test_mine_images_without_tags_are_skipped_and_counted(mini):
    edit_json(mini.labels, lambda d: d["images"].append(
        {"id": 77, "file_name": "untagged.jpg", "labels": []}))
    r = mini.mine("--json")
    ok(r)
    assert json.loads(r.stdout)["skipped_untagged"] == 1
    r = mini.mine("--resume")
    ok(r)
    assert "(1 skipped: no tags)" in r.stdout


def test_mine_no_tagged_image_at_all(mini):
    edit_json(mini.labels, lambda d: [im.update(labels=[]) for im in d["images"]])
    one_line_error(mini.mine(), mini.labels, "no image has a tag")


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/passwd"])
def test_mine_file_name_escaping_the_image_folder(mini, name):
    edit_json(mini.labels, lambda d: d["images"][1].update(file_name=name))
    one_line_error(mini.mine(), mini.labels, repr(name))


def test_mine_missing_image(mini):
    mini.first.unlink()
    one_line_error(mini.mine(), mini.first, "no such image")


@pytest.mark.parametrize("damage", [make_zero_byte, make_truncated, make_corrupt])
def test_mine_zero_byte_truncated_or_corrupt_image(mini, damage):
    damage(mini.first)
    one_line_error(mini.mine(), mini.first)


def test_mine_accepts_grey_rgba_16bit_and_palette_images(mini):
    edit_json(mini.labels, lambda d: d["images"].extend(
        [{**d["images"][0], "id": 100 + i, "file_name": f"{k}.png"}
         for i, k in enumerate(VARIANTS)]))
    for kind in VARIANTS:
        write_variant(mini.first, mini.images / f"{kind}.png", kind)
        ProposalStore(mini.props).save(f"{kind}.png", load_proposals(mini.first_npz))
    r = mini.mine("--json", "--set", "solver.max_iter=6")
    ok(r)
    assert json.loads(r.stdout)["images"] == 6


def test_mine_missing_proposal_file(mini):
    mini.first_npz.unlink()
    one_line_error(mini.mine(), mini.first_npz, "no such proposal file")


@pytest.mark.parametrize("damage", [make_truncated, make_corrupt, make_zero_byte])
def test_mine_corrupt_or_truncated_proposal_file(mini, damage):
    damage(mini.first_npz)
    one_line_error(mini.mine(), mini.first_npz, "corrupt proposal file")


def test_mine_proposal_file_for_another_image_size(mini):
    resized(mini.first, mini.first, 80, 100)
    one_line_error(mini.mine(), mini.first_npz, f"proposals are for a {W}x{H} image",
                   "the image is 100x80")


@pytest.mark.parametrize("setting,message", [
    ("solver.lr=abc", "config value solver.lr='abc': expected a number"),
    ("solver.max_iter=2.5", "config value solver.max_iter"),
    ("solver.max_iter=-3", "solver.max_iter=-3 is out of range"),
    ("mining.pooling=avg", "mining.pooling='avg' is out of range"),
    ("solver.nope=1", "unknown config key 'solver.nope'"),
])
def test_mine_config_value_of_wrong_type_or_range(mini, setting, message):
    one_line_error(mini.mine("--set", setting), message)
    assert not (mini.root / "run").exists()


@pytest.mark.parametrize("text,message", [
    ("[solver\nlr = 1", "cannot parse config"),
    ('[solver]\nlr = "fast"\n', "solver.lr='fast': expected a number"),
])
def test_mine_config_file_malformed_or_wrong_type(mini, text, message):
    cfg = mini.root / "bad.toml"
    cfg.write_text(text)
    one_line_error(mini.mine("--config", cfg), message)


def _finished_then_reopened(mini) -> Path:
    """A mining run that stopped after its first checkpoint (the rest removed)."""
    ok(mini.mine())
    run_dir = mini.root / "run"
    (run_dir / "model_final.pt").unlink()
    ck = run_dir / "checkpoints"
    for p in ck.glob("mine_0000002.pt"):
        p.unlink()
    (ck / "last_mine").write_text("mine_0000001.pt")
    return ck / "mine_0000001.pt"


def test_mine_resume_from_a_checkpoint_of_another_config(mini):
    ck = _finished_then_reopened(mini)
    config = (ck.parent.parent / "config.json").read_bytes()
    r = mini.mine("--resume", "--set", "mining.fc_dim=24")
    # refused before anything is written: the run's config differs from the resumed one
    one_line_error(r, ck.parent.parent, "mining.fc_dim=", "vs 24", "--overwrite")
    assert (ck.parent.parent / "config.json").read_bytes() == config


def test_mine_resume_from_a_checkpoint_holding_pickled_code(mini):
    ck = evil_checkpoint(_finished_then_reopened(mini))
    one_line_error(mini.mine("--resume"), ck, "refused: not a weights-only checkpoint")


def test_mine_resume_from_a_truncated_checkpoint(mini):
    ck = make_truncated(_finished_then_reopened(mini))
    one_line_error(mini.mine("--resume"), ck, "corrupt checkpoint")


def test_mine_diverging_loss_is_named_and_the_last_checkpoint_kept(mini):
    r = mini.mine("--set", "solver.lr=1e30", "--set", "solver.max_iter=6")
    line = one_line_error(r, "mine iteration", "last checkpoint kept")
    assert "nan" in line or "inf" in line
    marker = mini.root / "run/checkpoints/last_mine"
    if marker.is_file():  # every checkpoint left behind loads
        from jtsm.rundir.checkpoint import load_checkpoint

        load_checkpoint(marker.parent / marker.read_text())
    assert not (mini.root / "run/model_final.pt").exists()


# =============================================================================================
# relabel
# =============================================================================================
TINY_RUN = ["solver.max_iter=3", "solver.ims_per_batch=1", "solver.warmup_iters=0",
            "solver.steps=[2]", "mining.fc_dim=16", "mining.oicr_heads=1",
            "input.train_scales=[64]", "input.test_scales=[64]", "input.max_proposals=60",
            "proposals=felzenszwalb"]


@pytest.fixture(scope="module")
def mined_run(tmp_path_factory, synth_dir, synth_proposals) -> Path:
    out = tmp_path_factory.mktemp("mined_run")
    run_mine(load_config(overrides=TINY_RUN), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, out)
    return out


@pytest.fixture()
def rl(tmp_path, mined_run, synth_dir, synth_proposals) -> SimpleNamespace:
    """A copy of the mined run, the training images and their proposals, to damage."""
    run_dir = shutil.copytree(mined_run, tmp_path / "run")
    images = _copy_images(synth_dir, tmp_path / "images",
                          [p.name for p in (synth_dir / "images").glob("train_*.jpg")])
    props = shutil.copytree(synth_proposals, tmp_path / "props")
    mined_json = run_dir / "mined/panoptic.json"
    first = json.loads(mined_json.read_text())["annotations"][0]
    ns = SimpleNamespace(run=run_dir, images=images, props=props, mined_json=mined_json,
                         first_image=images / "train_000000.jpg",
                         first_npz=props / "train_000000.jpg.npz",
                         first_png=run_dir / "mined/panoptic" / first["file_name"])

    def relabel(*extra: str, evidence: str = "superpixel-snap"):
        return run("relabel", "--run", run_dir, "--images", images, "--proposals", props,
                   "--out", tmp_path / "pseudo", "--evidence", evidence, "--workers", "1",
                   "--quiet", "--json", *extra)

    ns.relabel = relabel
    return ns


@pytest.mark.parametrize("damage", [make_zero_byte, make_truncated, make_corrupt])
def test_relabel_zero_byte_truncated_or_corrupt_image(rl, damage):
    damage(rl.first_image)
    one_line_error(rl.relabel(), rl.first_image)


def test_relabel_accepts_grey_rgba_16bit_and_palette_images(rl):
    for i, kind in enumerate(VARIANTS):
        jpg = rl.images / f"train_{i:06d}.jpg"
        png = write_variant(jpg, rl.images / "tmp.png", kind)
        png.replace(jpg)  # same name, PNG content: readers go by content
    r = rl.relabel()
    ok(r)
    assert json.loads(r.stdout)["relabelled"] == 12


def test_relabel_missing_proposal_file(rl):
    rl.first_npz.unlink()
    one_line_error(rl.relabel(), rl.first_npz, "no such proposal file")


def test_relabel_corrupt_proposal_file(rl):
    make_truncated(rl.first_npz)
    one_line_error(rl.relabel(), rl.first_npz, "corrupt proposal file")


def test_relabel_proposal_file_for_another_image_size(rl):
    ps = ProposalSet(np.zeros((30, 40), np.int32), np.ones((1, 1), bool))
    ProposalStore(rl.props).save("train_000000.jpg", ps)
    one_line_error(rl.relabel(), rl.first_npz, "proposals are for a 40x30 image")


@pytest.mark.parametrize("name", ["../../escape.jpg", "/etc/passwd"])
def test_relabel_file_name_escaping_the_image_folder(rl, name):
    edit_json(rl.mined_json, lambda d: d["images"][0].update(file_name=name))
    one_line_error(rl.relabel(evidence="none"), rl.mined_json, repr(name))


def test_relabel_png_id_absent_from_segments_info(rl):
    edit_json(rl.mined_json, lambda d: d["annotations"][0]["segments_info"].pop(0))
    one_line_error(rl.relabel(), rl.first_png, "absent from segments_info")


def test_relabel_segments_info_id_absent_from_png(rl):
    edit_json(rl.mined_json, lambda d: d["annotations"][0]["segments_info"].append(
        {**d["annotations"][0]["segments_info"][0], "id": 4242}))
    one_line_error(rl.relabel(), rl.first_png, "4242", "absent from the PNG")


def test_relabel_unknown_category_id(rl):
    edit_json(rl.mined_json, lambda d: d["annotations"][0]["segments_info"][0].update(
        category_id=999))
    one_line_error(rl.relabel(), rl.mined_json, "unknown category id 999")


@pytest.mark.parametrize("damage", [make_truncated, make_zero_byte])
def test_relabel_malformed_or_truncated_mined_json(rl, damage):
    damage(rl.mined_json)
    one_line_error(rl.relabel(), rl.mined_json, "malformed JSON")


def test_relabel_corrupt_mined_png(rl):
    make_truncated(rl.first_png)
    one_line_error(rl.relabel(), rl.first_png, "truncated PNG")


def test_relabel_run_without_mined_outputs(rl):
    shutil.rmtree(rl.run / "mined")
    one_line_error(rl.relabel(), rl.mined_json, "no such file")


def test_relabel_malformed_dataset_json(rl, tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text('{"images": [{"id": 1}')
    one_line_error(rl.relabel("--dataset", ds), ds, "malformed JSON")
    ds.write_text('{"images": [{"id": "one"}]}')
    one_line_error(rl.relabel("--dataset", ds), ds, "'one'")


# =============================================================================================
# refine (pseudo labels: the mined run's own RUN/mined/panoptic.json)
# =============================================================================================
REFINE_SETS = ["solver.max_iter=2", "solver.checkpoint_period=1", "solver.warmup_iters=0",
               "solver.steps=[1]", "refine.mask_channels=8", "refine.semantic_channels=8",
               "refine.mask_convs=1", "refine.mask_size=7"]


@pytest.fixture()
def rf(rl) -> SimpleNamespace:
    """The relabel fixture's copies, and a refine command over them."""
    out = rl.run.parent / "refined"

    def refine(*extra: str, resume: bool = False):
        args = ["refine", "--run", rl.run, "--pseudo", rl.mined_json, "--images", rl.images,
                "--proposals", rl.props, "--out", out, "--quiet", "--json"]
        for s in REFINE_SETS:
            args += ["--set", s]
        return run(*args, *extra, *(["--resume"] if resume else []))

    rl.refine, rl.refined = refine, out
    return rl


def test_refine_truncated_pseudo_json(rf):
    make_truncated(rf.mined_json)
    one_line_error(rf.refine(), rf.mined_json, "malformed JSON")


def test_refine_unknown_category_id(rf):
    edit_json(rf.mined_json, lambda d: d["annotations"][0]["segments_info"][0].update(
        category_id=999))
    one_line_error(rf.refine(), rf.mined_json, "unknown category id 999")


def test_refine_png_id_absent_from_segments_info(rf):
    edit_json(rf.mined_json, lambda d: d["annotations"][0]["segments_info"].pop(0))
    one_line_error(rf.refine("--set", "solver.max_iter=12"), rf.first_png,
                   "absent from segments_info")


def test_refine_segments_info_id_absent_from_png(rf):
    edit_json(rf.mined_json, lambda d: d["annotations"][0]["segments_info"].append(
        {**d["annotations"][0]["segments_info"][0], "id": 4242}))
    one_line_error(rf.refine("--set", "solver.max_iter=12"), rf.first_png, "4242")


def test_refine_images_without_labels_are_skipped_and_counted(rf):
    edit_json(rf.mined_json, lambda d: d["annotations"][0].update(segments_info=[]))
    r = rf.refine()
    ok(r)
    assert json.loads(r.stdout)["skipped_untagged"] == 1


def test_refine_corrupt_pseudo_png(rf):
    make_truncated(rf.first_png)
    one_line_error(rf.refine("--set", "solver.max_iter=12"), rf.first_png, "truncated PNG")


@pytest.mark.parametrize("name", ["../../escape.jpg", "/etc/passwd"])
def test_refine_file_name_escaping_the_image_folder(rf, name):
    edit_json(rf.mined_json, lambda d: d["images"][0].update(file_name=name))
    one_line_error(rf.refine(), repr(name))


def test_refine_corrupt_image(rf):
    make_corrupt(rf.first_image)
    one_line_error(rf.refine("--set", "solver.max_iter=12"), rf.first_image)


def test_refine_missing_proposal_file(rf):
    rf.first_npz.unlink()
    one_line_error(rf.refine(), rf.first_npz, "no such proposal file")


def test_refine_source_checkpoint_of_another_config(rf):
    edit_json(rf.run / "config.json", lambda d: d["mining"].update(fc_dim=24))
    one_line_error(rf.refine(), rf.run / "model_final.pt", "do not fit")


def test_refine_source_checkpoint_holding_pickled_code(rf):
    evil_checkpoint(rf.run / "model_final.pt")
    one_line_error(rf.refine(), rf.run / "model_final.pt", "refused")


def test_refine_config_value_of_wrong_type(rf):
    one_line_error(rf.refine("--set", "refine.mask_size=big"),
                   "config value refine.mask_size='big'")


def test_refine_resume_from_a_checkpoint_of_another_config(rf):
    ok(rf.refine())
    one_line_error(rf.refine("--set", "refine.mask_channels=16", resume=True), rf.refined,
                   "refine.mask_channels=", "vs 16", "--overwrite")


# =============================================================================================
# predict
# =============================================================================================
@pytest.fixture()
def pr(tmp_path, mined_run, synth_dir, synth_proposals) -> SimpleNamespace:
    run_dir = shutil.copytree(mined_run, tmp_path / "run")
    val = sorted(p.name for p in (synth_dir / "images").glob("val_*.jpg"))
    images = _copy_images(synth_dir, tmp_path / "images", val)
    props = tmp_path / "props"
    props.mkdir()
    for n in val:
        shutil.copy(synth_proposals / (n + ".npz"), props)
    ds = shutil.copy(synth_dir / "annotations/panoptic_val.json", tmp_path / "val.json")
    ns = SimpleNamespace(run=run_dir, images=images, props=props, dataset=Path(ds),
                         out=tmp_path / "pred", first_image=images / val[0],
                         first_npz=props / (val[0] + ".npz"),
                         gt=synth_dir / "annotations/panoptic_val.json")

    def predict(*extra: str, proposals: bool = True, env=None):
        args = ["predict", "--run", run_dir, "--images", images, "--out", ns.out, "--quiet",
                "--json", *extra]
        if proposals:
            args += ["--proposals", props]
        return run(*args, env=env)

    ns.predict = predict
    return ns


@pytest.mark.parametrize("damage", [make_zero_byte, make_truncated, make_corrupt])
def test_predict_zero_byte_truncated_or_corrupt_image(pr, damage):
    damage(pr.first_image)
    one_line_error(pr.predict(), pr.first_image)
    assert not (pr.out / "panoptic.json").exists()


def test_predict_accepts_grey_rgba_16bit_and_palette_images(pr):
    for kind in VARIANTS:
        write_variant(pr.first_image, pr.images / f"{kind}.png", kind)
    r = pr.predict(proposals=False)
    ok(r)
    d = json.loads((pr.out / "panoptic.json").read_text())
    assert len(d["images"]) == 10
    assert all((im["height"], im["width"]) == (H, W) for im in d["images"])


def test_predict_very_large_image_is_downscaled_and_answered_at_full_size(pr):
    r = pr.predict("--dataset", pr.dataset, proposals=False, env={"JTSM_MAX_IMAGE_SIDE": "64"})
    ok(r)
    for ann in json.loads((pr.out / "panoptic.json").read_text())["annotations"]:
        assert read_panoptic_png(pr.out / "panoptic" / ann["file_name"]).shape == (H, W)
    r = run("eval", "--metric", "pq", "--gt", pr.gt, "--pred", pr.out / "panoptic.json",
            "--workers", "1", "--json")
    ok(r)
    dets = json.loads((pr.out / "detections.json").read_text())
    assert dets and max(d["bbox"][0] + d["bbox"][2] for d in dets) > 64


def test_predict_missing_proposal_file(pr):
    pr.first_npz.unlink()
    one_line_error(pr.predict(), pr.first_npz, "no such proposal file")


@pytest.mark.parametrize("damage", [make_truncated, make_corrupt])
def test_predict_corrupt_proposal_file(pr, damage):
    damage(pr.first_npz)
    one_line_error(pr.predict(), pr.first_npz, "corrupt proposal file")


def test_predict_proposal_file_for_another_image_size(pr):
    resized(pr.first_image, pr.first_image, 60, 70)
    one_line_error(pr.predict(), pr.first_npz, f"proposals are for a {W}x{H} image")


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/passwd"])
def test_predict_dataset_file_name_escaping_the_image_folder(pr, name):
    edit_json(pr.dataset, lambda d: d["images"][0].update(file_name=name))
    one_line_error(pr.predict("--dataset", pr.dataset), pr.dataset, repr(name))


def test_predict_malformed_or_truncated_dataset_json(pr):
    make_truncated(pr.dataset)
    one_line_error(pr.predict("--dataset", pr.dataset), pr.dataset, "malformed JSON")
    pr.dataset.write_text(json.dumps({"images": [{"id": "a", "file_name": "val_000000.jpg"}]}))
    one_line_error(pr.predict("--dataset", pr.dataset), pr.dataset, "'a'")


def test_predict_checkpoint_of_another_config(pr):
    edit_json(pr.run / "config.json", lambda d: d["mining"].update(fc_dim=24))
    one_line_error(pr.predict(), pr.run / "model_final.pt", "weights do not fit")


def test_predict_checkpoint_holding_pickled_code(pr):
    evil_checkpoint(pr.run / "model_final.pt")
    one_line_error(pr.predict(), pr.run / "model_final.pt",
                   "refused: not a weights-only checkpoint")


def test_predict_truncated_checkpoint(pr):
    make_truncated(pr.run / "model_final.pt")
    one_line_error(pr.predict(), pr.run / "model_final.pt", "corrupt checkpoint")


def test_predict_run_config_value_of_wrong_type(pr):
    edit_json(pr.run / "config.json", lambda d: d["solver"].update(lr="fast"))
    one_line_error(pr.predict(), pr.run / "config.json", "solver.lr='fast'")


def test_predict_not_a_run_folder(pr, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("predict", "--run", tmp_path / "empty", "--images", pr.images, "--out", pr.out)
    one_line_error(r, tmp_path / "empty" / "meta.json", "no such file")


# =============================================================================================
# eval (more rows in tests/evaluation/test_eval_cli.py)
# =============================================================================================
@pytest.fixture()
def pair(tmp_path):
    from jtsm.evaluation.synthetic import write_pair_dataset

    gt, pred = write_pair_dataset(tmp_path / "d", 3, 30, 40, seed=5, num_segments=6)
    return SimpleNamespace(gt=gt, pred=pred, pred_png=pred.parent / "pred" / "000001.png")


def _pq(p, *extra):
    return run("eval", "--metric", "pq", "--gt", p.gt, "--pred", p.pred, "--workers", "1",
               *extra)


def test_eval_truncated_json(pair):
    make_truncated(pair.gt)
    one_line_error(_pq(pair), pair.gt, "malformed JSON")


def test_eval_unknown_category_id(pair):
    edit_json(pair.pred, lambda d: d["annotations"][1]["segments_info"][0].update(
        category_id=999))
    one_line_error(_pq(pair), pair.pred, "unknown category id 999")


def test_eval_png_id_absent_from_segments_info(pair):
    edit_json(pair.pred, lambda d: d["annotations"][1]["segments_info"].pop(0))
    one_line_error(_pq(pair), pair.pred_png, "absent from segments_info")


def test_eval_segments_info_id_absent_from_png(pair):
    edit_json(pair.pred, lambda d: d["annotations"][1]["segments_info"].append(
        {**d["annotations"][1]["segments_info"][0], "id": 4242}))
    one_line_error(_pq(pair), pair.pred_png, "4242", "absent from the PNG")


@pytest.mark.parametrize("damage", [make_zero_byte, make_truncated, make_damaged_png])
def test_eval_zero_byte_truncated_or_corrupt_png(pair, damage):
    damage(pair.pred_png)
    one_line_error(_pq(pair), pair.pred_png)


@pytest.mark.parametrize("name", ["../../escape.png", "/etc/passwd"])
def test_eval_png_file_name_escaping_the_folder(pair, name):
    edit_json(pair.pred, lambda d: d["annotations"][0].update(file_name=name))
    one_line_error(_pq(pair), repr(name))


def test_eval_recall_missing_corrupt_or_other_size_proposal_file(tmp_path, synth_dir,
                                                                 synth_proposals):
    gt = synth_dir / "annotations/panoptic_val.json"
    props = shutil.copytree(synth_proposals, tmp_path / "props")
    first = props / "val_000000.jpg.npz"

    def recall():
        return run("eval", "--metric", "recall", "--gt", gt, "--pred", props)

    first.unlink()
    one_line_error(recall(), first, "no such proposal file")
    first.write_bytes(b"PK\x03\x04 broken zip")
    one_line_error(recall(), first, "corrupt proposal file")
    ProposalStore(props).save("val_000000.jpg",
                              ProposalSet(np.zeros((5, 6), np.int32), np.ones((1, 1), bool)))
    one_line_error(recall(), first, "proposals are for a 6x5 image")


# =============================================================================================
# every command: --debug shows the traceback the one-line error hides
# =============================================================================================
def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "gt.json"
    bad.write_text("{")
    args = ["eval", "--metric", "pq", "--gt", str(bad), "--pred", str(bad)]
    plain = subprocess.run([sys.executable, "-m", "jtsm_cli", *args], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [f"Error: {bad}: malformed JSON "
                                                 "(Expecting property name enclosed in double "
                                                 "quotes: line 1 column 2 (char 1))"]
    debug = subprocess.run([sys.executable, "-m", "jtsm_cli", "--debug", *args],
                           capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DataError" in debug.stderr


def test_checkpoint_loading_runs_no_code(tmp_path):
    """The pickled-code rows above are refused before anything runs: prove nothing ran."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    from jtsm.errors import DataError
    from jtsm.rundir.checkpoint import load_checkpoint

    with pytest.raises(DataError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
