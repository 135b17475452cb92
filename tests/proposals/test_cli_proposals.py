"""``jtsm proposals``: the command line contract (summary, resume, bad images, shards, viz)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from jtsm.evaluation.recall import evaluate_recall
from jtsm.proposals.store import ProposalStore
from jtsm_cli.main import cli


def _run(*args: str):
    return CliRunner().invoke(cli, ["proposals", *args])


def test_help_has_an_example():
    r = _run("--help")
    assert r.exit_code == 0
    assert "Example" in r.output and "--shard" in r.output and "--quiet" in r.output


def test_dataset_run_json_summary_resume_and_viz(synth_dir, tmp_path):
    images = synth_dir / "images"
    ds = synth_dir / "annotations" / "panoptic_val.json"
    out = tmp_path / "props"
    r = _run("--images", str(images), "--dataset", str(ds), "--out", str(out), "--max", "300",
             "--workers", "1", "--json", "--viz", "2", "--quiet")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["images"] == 6 and info["computed"] == 6 and info["bad"] == []
    assert 10 < info["proposals_per_image"] <= 300 and info["seconds_per_image"] > 0
    assert len(list((out / "viz").glob("*.png"))) == 2
    assert len(ProposalStore(out).index()) == 6
    rec = evaluate_recall(ds, out)
    assert rec["all"]["n"] > 40
    # quality guard (deterministic: seeded data and ranking); 96x112 px, 300 proposals
    assert rec["things"]["recall@0.5"] >= 0.9 and rec["stuff"]["recall@0.5"] >= 0.8
    # rerun: nothing left to do
    r = _run("--images", str(images), "--dataset", str(ds), "--out", str(out), "--max", "300",
             "--json", "-q")
    assert json.loads(r.stdout)["skipped"] == 6


def test_bad_image_warns_and_exits_1_unless_skip_bad(synth_dir, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for p in sorted((synth_dir / "images").glob("val_*"))[:2]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "zero.jpg").write_bytes(b"")
    out = tmp_path / "props"
    args = ["--images", str(images), "--out", str(out), "--method", "felzenszwalb",
            "--workers", "1", "-q"]
    r = _run(*args)
    assert r.exit_code == 1
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("Warning")]
    assert len(warnings) == 1 and "zero.jpg" in warnings[0]
    assert "1 bad" in r.stdout and "zero.jpg" in r.stdout
    r = _run(*args, "--skip-bad")
    assert r.exit_code == 0


def test_shards_and_usage_errors(synth_dir, tmp_path):
    images = synth_dir / "images"
    out = tmp_path / "props"
    n = len(list(images.glob("*")))
    done = 0
    for i in range(2):
        r = _run("--images", str(images), "--out", str(out), "--method", "felzenszwalb",
                 "--shard", f"{i}/2", "--workers", "1", "--json", "-q")
        assert r.exit_code == 0, r.output
        done += json.loads(r.stdout)["computed"]
    assert done == n == len(list(out.glob("*.npz")))
    assert sorted(p.name for p in out.glob("index*.json")) == [
        "index.shard0-of-2.json", "index.shard1-of-2.json"]
    r = _run("--images", str(images), "--out", str(out), "--shard", "2/2")
    assert r.exit_code == 1 and "--shard" in r.output
    r = _run("--images", str(images), "--out", str(out), "--method", "nope")
    assert r.exit_code == 1 and "unknown proposal method 'nope'" in r.output
    r = _run("--images", str(images), "--out", str(out), "--opt", "novalue")
    assert r.exit_code == 2


def test_killed_run_is_finished_by_rerunning(tmp_path):
    """SIGKILL a real run after its first file, rerun: every image ends with a valid file."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.proposals.store import load_proposals

    data = tmp_path / "d"
    write_synth_dataset(data, 0, 16, SynthConfig(height=96, width=128), seed=5)
    out = tmp_path / "props"
    jtsm = str(Path(sys.executable).with_name("jtsm"))
    cmd = [jtsm, "proposals", "--images", str(data / "images"), "--out", str(out),
           "--workers", "2", "-q", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("*.npz")) and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its workers
    proc.wait()
    before = {p.name for p in out.glob("*.npz")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["images"] == 16 and info["skipped"] == len(before)
    assert info["computed"] == 16 - len(before)
    files = sorted(out.glob("*.npz"))
    assert len(files) == 16
    index = ProposalStore(out).index()
    assert len(index) == 16  # including the images finished before the kill
    for f in files:
        ps = load_proposals(f, expect_size=(96, 128))
        assert index[f.name.removesuffix(".npz")]["proposals"] == len(ps) > 0
