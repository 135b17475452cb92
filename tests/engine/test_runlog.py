"""Logs where schedulers look: log.txt, plain stderr lines when not a terminal, TensorBoard."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from jtsm.engine.runlog import format_eta, progress_line
from jtsm_cli.main import cli

TINY = ["solver.max_iter=4", "solver.ims_per_batch=2", "solver.checkpoint_period=4",
        "solver.log_period=2", "solver.warmup_iters=1", "solver.steps=[3]",
        "tag_warmup.iters=3", "tag_warmup.batch=2", "tag_warmup.items=2",
        "mining.fc_dim=32", "mining.oicr_heads=2", "input.train_scales=[64]",
        "input.test_scales=[64]", "input.max_proposals=60"]

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (warmup|mine) (\d+)/(\d+) loss \d+\.\d{4}"
                  r"( \(.+\))? lr \S+ \d+\.\d\d it/s ETA (\d+:\d\d:\d\d|-)$")


def test_progress_line_and_eta():
    rec = {"stage": "mine", "iteration": 10, "max_iter": 50, "lr": 0.01, "loss": 1.5,
           "mil": 1.0, "refine": 0.5, "seconds": 0.1}
    line = progress_line(rec, 2.0)
    assert LINE.match(line), line
    assert "mine 10/50 loss 1.5000 (mil 1.0000, refine 0.5000)" in line
    assert line.endswith("2.00 it/s ETA 0:00:20")
    assert format_eta(float("nan")) == "-" and format_eta(3725) == "1:02:05"


def test_training_without_a_terminal_prints_plain_lines_and_writes_logs(
        tmp_path, synth_dir, synth_proposals):
    run = tmp_path / "run"
    args = ["mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
            "--images", str(synth_dir / "images"), "--proposals", str(synth_proposals),
            "--out", str(run), "--json"]
    for o in TINY:
        args += ["--set", o]
    r = CliRunner().invoke(cli, args)  # CliRunner's stderr is not a terminal
    assert r.exit_code == 0, r.output
    printed = [ln for ln in r.stderr.splitlines() if LINE.match(ln)]
    # every log_period iterations and at each stage's end: warmup 2, 3; mine 2, 4
    assert [(m.group(1), int(m.group(2))) for m in map(LINE.match, printed)] == [
        ("warmup", 2), ("warmup", 3), ("mine", 2), ("mine", 4)]
    log = (run / "log.txt").read_text().splitlines()
    assert [ln for ln in log if LINE.match(ln)] == printed  # the same lines
    assert any("mine started, 4 iterations" in ln for ln in log)


def test_tensorboard_has_the_scalars_of_metrics_jsonl(tmp_path, synth_dir, synth_proposals):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from jtsm.config import load_config
    from jtsm.engine.mine import run_mine

    run = tmp_path / "run"
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, run)
    ev = EventAccumulator(str(run / "tensorboard")).Reload()
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    want = {f"{m['stage']}/{k}" for m in metrics for k, v in m.items()
            if k not in ("stage", "iteration", "max_iter", "seconds")
            and isinstance(v, (int, float))}
    assert set(ev.Tags()["scalars"]) == want
    for m in metrics:
        got = {e.step: e.value for e in ev.Scalars(f"{m['stage']}/loss")}
        assert got[m["iteration"]] == pytest.approx(m["loss"], rel=1e-6)
