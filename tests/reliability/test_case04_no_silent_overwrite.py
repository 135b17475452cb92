"""Case 4: ``mine``/``refine`` into a finished run retrained over it without a word
(``metrics.jsonl`` then held both runs); ``refine --out`` equal to ``--run`` replaced the mining
model; ``relabel --out RUN/mined`` overwrote the run's own mined labels. Now each is refused
with the ways out, and ``--overwrite`` replaces a run and says so."""

from __future__ import annotations

import json
import shutil

from conftest import TINY, jtsm, tree


def _mine(rel_data, out, *extra):
    sets = [a for s in TINY for a in ("--set", s)]
    return jtsm("mine", "--dataset", rel_data / "annotations/panoptic_train.json",
                "--images", rel_data / "images", "--proposals", rel_data / "props",
                "--out", out, "-q", *sets, *extra)


def test_mine_into_a_finished_run_is_refused_then_overwritten(tmp_path, rel_data, rel_run):
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    before = tree(run)
    code, text = _mine(rel_data, run)
    assert code == 1 and "holds a run of this job already" in text
    assert "--resume continues it, --overwrite replaces it" in text
    assert tree(run) == before
    old_id = json.loads((run / "meta.json").read_text())["run_id"]
    code, text = _mine(rel_data, run, "--overwrite")
    assert code == 0, text
    assert "--overwrite: replacing the run in" in text
    assert json.loads((run / "meta.json").read_text())["run_id"] != old_id
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    its = [r["iteration"] for r in lines if r["stage"] == "mine"]
    assert its and its == sorted(set(its))  # one run's lines only


def test_refine_out_equal_to_run_and_relabel_into_mined_are_refused(tmp_path, rel_data,
                                                                      rel_run):
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    before = tree(run)
    code, text = jtsm("refine", "--run", run, "--pseudo", run / "mined/panoptic.json",
                      "--images", rel_data / "images", "--out", run, "-q")
    assert code == 1 and f"--out {run} is the input --run" in text
    code, text = jtsm("relabel", "--run", run, "--images", rel_data / "images",
                      "--out", run / "mined", "--evidence", "none", "--workers", 1, "-q")
    assert code == 1 and "is inside the input --run" in text
    assert tree(run) == before
