"""A run folder written by an earlier jtsm (``tests/fixtures/run-0.2.0``, see
make_run_fixture.py there) still predicts, resumes and refines with this version: its
fingerprint still matches the same job, its checkpoints and weights still load."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from jtsm_cli.main import cli

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run-0.2.0"
sys.path.insert(0, str(FIXTURE.parent))
from make_run_fixture import TINY  # noqa: E402

REFINE = ["solver.max_iter=2", "solver.ims_per_batch=1", "solver.warmup_iters=0",
          "solver.steps=[1]", "refine.mask_channels=8", "refine.semantic_channels=8"]


def _sets(keys):
    return sum((["--set", k] for k in keys), [])


@pytest.fixture
def old(tmp_path) -> Path:
    root = tmp_path / "old"
    shutil.copytree(FIXTURE, root)
    return root


def _ok(args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_an_older_run_predicts(old, tmp_path):
    data = old / "data"
    _ok(["predict", "--run", old / "run", "--images", data / "images", "--dataset",
         data / "annotations/panoptic_val.json", "--proposals", data / "props",
         "--out", tmp_path / "pred", "-q"])
    pred = json.loads((tmp_path / "pred/panoptic.json").read_text())
    assert len(pred["annotations"]) == 2
    assert all((tmp_path / "pred/panoptic" / a["file_name"]).is_file()
               for a in pred["annotations"])


def test_an_older_run_resumes_as_the_same_job(old):
    """A larger ``solver.max_iter`` continues the old run from its last mining checkpoint:
    the warm-up it finished is not trained again and no other job is reported."""
    data, run = old / "data", old / "run"
    before = run.joinpath("metrics.jsonl").read_text().splitlines()
    _ok(["mine", "--dataset", data / "annotations/panoptic_train.json", "--images",
         data / "images", "--proposals", data / "props", "--out", run, "--resume", "-q",
         *_sets(TINY), "--set", "solver.max_iter=3"])
    recs = [json.loads(ln) for ln in run.joinpath("metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["iteration"]) for r in recs[len(before):]] == [("mine", 3)]
    assert (run / "checkpoints/last_mine").read_text() == "mine_0000003.pt"


def test_an_older_run_refines(old, tmp_path):
    data, run = old / "data", old / "run"
    _ok(["refine", "--run", run, "--pseudo", run / "mined/panoptic.json", "--images",
         data / "images", "--proposals", data / "props", "--out", tmp_path / "refine", "-q",
         *_sets(REFINE)])
    assert (tmp_path / "refine/model_final.pt").is_file()
    _ok(["predict", "--run", tmp_path / "refine", "--images", data / "images", "--dataset",
         data / "annotations/panoptic_val.json", "--proposals", data / "props",
         "--out", tmp_path / "pred", "-q"])
