"""Run folders that travel and know what made them: absolute inputs, fingerprints, umask."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from jtsm.config import config_to_dict, load_config
from jtsm.errors import JtsmError
from jtsm.rundir import fingerprint as fpr

TINY = ["solver.max_iter=2", "solver.ims_per_batch=1", "solver.warmup_iters=0",
        "solver.steps=[1]", "mining.fc_dim=16", "mining.oicr_heads=1",
        "input.train_scales=[64]", "input.test_scales=[64]", "input.max_proposals=40",
        "proposals=felzenszwalb"]
REFINE = ["--set", "solver.max_iter=1", "--set", "refine.mask_channels=8",
          "--set", "refine.semantic_channels=8", "--set", "refine.mask_rois=8",
          "--set", "refine.mask_convs=1", "--set", "refine.semantic_convs=1"]


def _cli(*args: object) -> tuple[int, str]:
    from jtsm_cli.main import cli

    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.output


def test_differences_name_the_config_keys_and_inputs():
    a = config_to_dict(load_config(overrides=TINY))
    b = config_to_dict(load_config(overrides=TINY + ["mining.fc_dim=32", "seed=3"]))
    fa = fpr.fingerprint("mine", {"dataset": fpr.input_record("/x/a.json", "d1")}, config=a)
    fb = fpr.fingerprint("mine", {"dataset": fpr.input_record("/y/a.json", "d2")}, config=b)
    diff = fpr.differences(fa, fb, a, b)
    assert diff == ["input dataset (/x/a.json vs /y/a.json)", "mining.fc_dim=16 vs 32",
                    "seed=0 vs 3"]
    # the schedule's length may change on a resume; a moved input with the same content is
    # the same input
    c = config_to_dict(load_config(overrides=TINY + ["solver.max_iter=50"]))
    fc = fpr.fingerprint("mine", {"dataset": fpr.input_record("/z/a.json", "d1")}, config=c)
    assert fpr.differences(fa, fc, a, c) == []
    assert fpr.fingerprint_digest(fa) == fpr.fingerprint_digest(fc)


def test_a_key_added_since_a_run_was_made_is_the_same_job_at_its_default():
    """A run whose config.json predates a key behaved as that key's default: the same job for
    a newer jtsm at the default, another job (the key named) at another value."""
    old = config_to_dict(load_config(overrides=TINY))
    del old["refine"]["train_backbone"]
    now = config_to_dict(load_config(overrides=TINY))
    fo = fpr.fingerprint("mine", {}, config=old)
    assert fpr.differences(fo, fpr.fingerprint("mine", {}, config=now), old, now) == []
    other = config_to_dict(load_config(overrides=TINY + ["refine.train_backbone=false"]))
    assert fpr.differences(fo, fpr.fingerprint("mine", {}, config=other), old, other) == [
        "refine.train_backbone=None vs False"]


def test_check_folder_decisions(tmp_path):
    fp = fpr.fingerprint("mine", {}, {"k": 1})
    assert fpr.check_folder(tmp_path / "new", fp, resume=False, overwrite=False) == "new"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "meta.json").write_text(json.dumps({"fingerprint": fp}))
    assert fpr.check_folder(tmp_path / "run", fp, resume=True, overwrite=False) == "resume"
    assert fpr.check_folder(tmp_path / "run", fp, resume=False, overwrite=True) == "overwrite"
    with pytest.raises(JtsmError, match="of this job already; --resume continues it"):
        fpr.check_folder(tmp_path / "run", fp, resume=False, overwrite=False)
    other = fpr.fingerprint("mine", {}, {"k": 2})
    with pytest.raises(JtsmError, match=r"another run \(k 1 vs 2\); --resume is only for"):
        fpr.check_folder(tmp_path / "run", other, resume=True, overwrite=False)
    with pytest.raises(JtsmError, match="contradict"):
        fpr.check_folder(tmp_path / "run", fp, resume=True, overwrite=True)
    with pytest.raises(JtsmError, match="is inside the input --run"):
        fpr.check_not_inside(tmp_path / "run" / "mined", "--out", {"--run": tmp_path / "run"})


def _modes(root: Path) -> set[str]:
    return {oct(stat.S_IMODE(p.stat().st_mode)) for p in root.rglob("*") if p.is_file()}


def test_runs_work_from_another_directory_and_follow_the_umask(tmp_path, monkeypatch,
                                                                synth_dir, synth_proposals):
    """The mining run is made with relative paths; refine (proposals found through the run's
    record) and predict then run from another directory; every output is 0644 under umask
    022; a moved proposal store is named with the option that overrides it."""
    from jtsm.engine.mine import run_mine

    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copytree(synth_proposals, work / "data" / "props")
    shutil.copy(synth_dir / "annotations/panoptic_train.json", work / "data" / "train.json")
    old = os.umask(0o022)
    try:
        monkeypatch.chdir(work)
        run_mine(load_config(overrides=TINY), Path("data/train.json"), synth_dir / "images",
                 Path("data/props"), Path("runs/mine"))
        meta = json.loads((work / "runs/mine/meta.json").read_text())
        assert meta["proposals"] == str(work / "data/props")
        assert Path(meta["dataset"]).is_absolute() and meta["fingerprint"]["config"]
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        run = work / "runs/mine"
        code, text = _cli("refine", "--run", run, "--pseudo", run / "mined/panoptic.json",
                          "--images", synth_dir / "images", "--out", "refined", "-q", *REFINE)
        assert code == 0, text
        code, text = _cli("predict", "--run", "refined", "--images", synth_dir / "images",
                          "--dataset", synth_dir / "annotations/panoptic_val.json",
                          "--proposals", work / "data/props", "--out", "pred", "-q")
        assert code == 0, text
        for root in (run, elsewhere / "refined", elsewhere / "pred"):
            assert _modes(root) == {"0o644"}, root
        shutil.move(work / "data/props", work / "data/props_moved")
        code, text = _cli("refine", "--run", run, "--pseudo", run / "mined/panoptic.json",
                          "--images", synth_dir / "images", "--out", "refined2", "-q", *REFINE)
        assert code == 1
        assert f"{work / 'data/props'}, no longer exists; pass --proposals" in text
    finally:
        os.umask(old)
