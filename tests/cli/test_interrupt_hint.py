"""Ctrl-C: the command that continues the work is printed, exit 130, no traceback."""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

from jtsm_cli.main import cli, interrupt_hint


def test_training_commands_get_their_resume_command():
    args = ["mine", "--dataset", "my labels.json", "--images", "photos", "--proposals",
            "props", "--out", "runs/mine", "--config", "photos", "--overwrite"]
    hint = interrupt_hint(args)
    command = hint.splitlines()[-1].strip()
    assert shlex.split(command) == ["jtsm", *args[:-1], "--resume"]
    assert "--overwrite" not in command
    once = interrupt_hint([*args[:-1], "--resume"]).splitlines()[-1]
    assert once.count("--resume") == 1
    assert shlex.split(interrupt_hint(["--debug", "refine", "--out", "r"]).splitlines()[-1]) == [
        "jtsm", "--debug", "refine", "--out", "r", "--resume"]


def test_resumable_stores_get_the_same_command_and_others_nothing():
    hint = interrupt_hint(["proposals", "--images", "p", "--out", "s", "--overwrite"])
    assert hint.splitlines()[-1].strip() == "jtsm proposals --images p --out s"
    assert interrupt_hint(["eval", "--metric", "pq"]) == ""
    assert interrupt_hint([]) == ""


def test_ctrl_c_in_mine_prints_the_resume_command(tmp_path, monkeypatch):
    import jtsm.engine.mine as mine_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mine_mod, "run_mine", interrupted)
    ds = tmp_path / "labels.json"
    ds.write_text("{}")
    args = ["mine", "--dataset", str(ds), "--images", str(tmp_path), "--proposals",
            str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cpu"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 130
    assert r.output.startswith("Interrupted.")
    assert shlex.split(r.output.strip().splitlines()[-1]) == ["jtsm", *args, "--resume"]
    assert "Traceback" not in r.output


@pytest.mark.parametrize("name", ["photos", "synth"])
def test_config_show_takes_the_preset_name(name):
    r = CliRunner().invoke(cli, ["config", "show", name])
    assert r.exit_code == 0, r.output
    assert r.output == CliRunner().invoke(cli, ["config", "show", "--config", name]).output
    r = CliRunner().invoke(cli, ["config", "show", "photos", "--config", "synth"])
    assert r.exit_code == 2


def test_resume_without_a_checkpoint_says_it_starts_from_zero(tmp_path, monkeypatch):
    import jtsm.engine.mine as mine_mod

    monkeypatch.setattr(mine_mod, "run_mine", lambda *a, **k: {"images": 1,
                                                                "skipped_untagged": 0})
    ds = tmp_path / "labels.json"
    ds.write_text("{}")
    out = tmp_path / "run"
    args = ["mine", "--dataset", str(ds), "--images", str(tmp_path), "--proposals",
            str(tmp_path), "--out", str(out), "--device", "cpu", "--resume"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert f"--resume: {out} has no checkpoint yet; training starts from iteration 0" in r.stderr
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints/mine_0000010.pt").write_bytes(b"x")
    r = CliRunner().invoke(cli, args)
    assert "starts from iteration 0" not in r.stderr
