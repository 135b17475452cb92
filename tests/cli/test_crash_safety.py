"""Crash safety (issue 9, item 2): ``kill -9`` at random points, then the same command again.

Each test runs a real command in a subprocess (its own process group, so pool workers die with
it), kills it with SIGKILL at a random point (after a random number of its output files exist,
or after a random delay), checks that every file left behind is whole (it loads), reruns the
command to completion and compares the result with an uninterrupted run: the same bytes (PNGs),
the same data (json, proposal files) and, for training, bit-identical weights.

The non-slow tests kill ``relabel`` and ``predict`` once each; ``proposals`` and ``mine`` have
one non-slow kill test each elsewhere (tests/proposals/test_cli_proposals.py,
tests/engine/test_kill_resume.py). The ``slow`` tests (``make test-all``) kill proposals,
relabel, predict, mine and refine several times each, at random points.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from jtsm.config import load_config
from jtsm.data.coco_panoptic import load_panoptic_json, read_panoptic_png
from jtsm.engine.mine import run_mine
from jtsm.proposals.store import load_proposals
from jtsm.rundir.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|pt)$")  # atomic_path's temporary names

TINY_RUN = ["solver.max_iter=3", "solver.ims_per_batch=1", "solver.warmup_iters=0",
            "solver.steps=[2]", "mining.fc_dim=16", "mining.oicr_heads=1",
            "input.train_scales=[64]", "input.test_scales=[64]", "input.max_proposals=60",
            "proposals=felzenszwalb"]


def jtsm(*args: object) -> list[str]:
    return [sys.executable, "-m", "jtsm_cli", *(str(a) for a in args)]


def finish(cmd: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


def kill_when(cmd: list[str], ready: Callable[[], bool], extra_delay: float = 0.0,
              timeout: float = 120) -> bool:
    """Start ``cmd``, SIGKILL its process group once ``ready()`` (plus ``extra_delay`` s);
    returns False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV, start_new_session=True)
    deadline = time.time() + timeout
    while proc.poll() is None and not ready() and time.time() < deadline:
        time.sleep(0.005)
    if extra_delay and proc.poll() is None:
        time.sleep(extra_delay)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return killed


def at_least(n: int, folder: Path, pattern: str) -> Callable[[], bool]:
    """``ready`` for :func:`kill_when`: ``n`` files of ``folder`` match ``pattern``."""
    return lambda: len(list(folder.glob(pattern))) >= n


def checkpoint_reached(ck: Path, stage: str, it: int) -> Callable[[], bool]:
    """True once ``ck`` holds a ``<stage>_<N>.pt`` checkpoint with ``N >= it``."""
    return lambda: any(int(p.stem.split("_")[1]) >= it for p in ck.glob(f"{stage}_*.pt"))


def assert_whole(root: Path, cut_metrics_ok: bool = False) -> None:
    """Every file under ``root`` loads; hidden temporary files are the only leftovers."""
    if not root.exists():
        return
    for path in root.rglob("*"):
        if path.is_dir():
            continue
        name = path.name
        if name.startswith("."):
            if name == ".summary.json":
                json.loads(path.read_text())
            else:
                assert TEMP_NAME.match(name), f"unexpected hidden file {path}"
            continue
        if name.endswith(".npz"):
            load_proposals(path)
        elif name.endswith(".png"):
            read_panoptic_png(path)  # decodes whole (CRC-checked chunks up to IEND)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".jsonl"):
            lines = path.read_text().splitlines()
            for i, line in enumerate(lines):
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    assert cut_metrics_ok and i == len(lines) - 1, f"{path}: line {i + 1} cut"
        elif name.endswith(".pt"):
            load_checkpoint(path)
        elif name.startswith("last_"):
            assert (path.parent / path.read_text().strip()).is_file(), path
    for pan in root.rglob("panoptic.json"):  # the json is the commit point of its PNGs
        ds = load_panoptic_json(pan)
        for im in ds.images:
            ds.read(im["id"], complete=True)


def same_panoptic(a: Path, b: Path) -> None:
    """Two COCO panoptic outputs (json + PNGs) are identical."""
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    da.pop("info", None), db.pop("info", None)
    assert da == db
    for ann in da["annotations"]:
        pa = a.with_suffix("") / ann["file_name"]
        pb = b.with_suffix("") / ann["file_name"]
        assert pa.read_bytes() == pb.read_bytes(), ann["file_name"]


@pytest.fixture(scope="module")
def mined_run(tmp_path_factory, synth_dir, synth_proposals) -> Path:
    out = tmp_path_factory.mktemp("mined_run")
    run_mine(load_config(overrides=TINY_RUN), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, out)
    return out


# ---- relabel ---------------------------------------------------------------------------------
def _relabel(mined_run: Path, synth_dir: Path, synth_proposals: Path, out: Path) -> list[str]:
    return jtsm("relabel", "--run", mined_run, "--images", synth_dir / "images",
                "--proposals", synth_proposals, "--out", out, "--evidence", "grabcut",
                "--workers", "2", "--quiet")


def _relabel_kills(tmp_path, mined_run, synth_dir, synth_proposals, kills: list[int],
                   rng: random.Random) -> None:
    ref = tmp_path / "ref"
    finish(_relabel(mined_run, synth_dir, synth_proposals, ref))
    out = tmp_path / "killed"
    cmd = _relabel(mined_run, synth_dir, synth_proposals, out)
    killed = 0
    for k in kills:
        killed += kill_when(cmd, at_least(k, out / "parts", "*.json"), rng.uniform(0, 0.05))
        assert_whole(out)
        assert not (out / "panoptic.json").exists()
    assert killed >= len(kills) - 1, "the runs finished before they could be killed"
    finish(cmd)
    assert_whole(out)
    same_panoptic(ref / "panoptic.json", out / "panoptic.json")


def test_relabel_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, mined_run, synth_dir,
                                                                synth_proposals):
    _relabel_kills(tmp_path, mined_run, synth_dir, synth_proposals, [4], random.Random(0))


@pytest.mark.slow
def test_relabel_killed_at_random_points(tmp_path, mined_run, synth_dir, synth_proposals):
    rng = random.Random(1)
    _relabel_kills(tmp_path, mined_run, synth_dir, synth_proposals,
                   sorted(rng.sample(range(1, 11), 4)), rng)


# ---- predict ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def many_images(tmp_path_factory, synth_dir) -> Path:
    """30 images (the 6 val images, 5 times over), so that a kill lands mid-run."""
    d = tmp_path_factory.mktemp("many")
    for i in range(30):
        shutil.copy(synth_dir / "images" / f"val_{i % 6:06d}.jpg", d / f"im_{i:03d}.jpg")
    return d


def _predict_kills(tmp_path, mined_run, images, kills: list[int], rng: random.Random) -> None:
    ref = tmp_path / "ref"
    finish(jtsm("predict", "--run", mined_run, "--images", images, "--out", ref, "-q"))
    out = tmp_path / "killed"
    # a complete earlier output (another setting) in the same folder: a killed rerun leaves it
    # whole (the new files are written beside it and replace it as a set at the end)
    finish(jtsm("predict", "--run", mined_run, "--images", images, "--out", out, "--tta", "-q"))
    earlier = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # another job's outputs are replaced only on request
    cmd = jtsm("predict", "--run", mined_run, "--images", images, "--out", out, "-q",
               "--overwrite")
    staging = tmp_path / ".killed.partial"
    for k in kills:
        killed = kill_when(cmd, at_least(k, staging / "panoptic", "*.png"), rng.uniform(0, 0.05))
        assert_whole(out)
        assert killed, "the run finished before it could be killed"
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
                if p.is_file()} == earlier
    finish(cmd)
    assert not staging.exists()
    assert_whole(out)
    same_panoptic(ref / "panoptic.json", out / "panoptic.json")
    for name in ("instances.json", "detections.json"):
        assert json.loads((ref / name).read_text()) == json.loads((out / name).read_text())


def test_predict_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, mined_run,
                                                                many_images):
    _predict_kills(tmp_path, mined_run, many_images, [5], random.Random(0))


@pytest.mark.slow
def test_predict_killed_at_random_points(tmp_path, mined_run, many_images):
    rng = random.Random(2)
    _predict_kills(tmp_path, mined_run, many_images, sorted(rng.sample(range(1, 25), 4)), rng)


# ---- proposals -------------------------------------------------------------------------------
@pytest.mark.slow
def test_proposals_killed_at_random_points(tmp_path, many_images):
    rng = random.Random(3)
    base = ["proposals", "--images", many_images, "--method", "selective-search", "--max",
            "200", "-q"]
    ref = tmp_path / "ref"
    finish(jtsm(*base, "--out", ref, "--workers", "1"))
    out = tmp_path / "killed"
    cmd = jtsm(*base, "--out", out, "--workers", "2")
    killed = 0
    for k in sorted(rng.sample(range(1, 30), 5)):
        killed += kill_when(cmd, at_least(k, out, "*.npz"), rng.uniform(0, 0.1))
        assert_whole(out)
    assert killed >= 3, "the runs finished before they could be killed"
    finish(cmd)
    assert_whole(out)
    files = sorted(p.name for p in ref.glob("*.npz"))
    assert files == sorted(p.name for p in out.glob("*.npz")) and len(files) == 30
    for name in files:
        a, b = load_proposals(ref / name), load_proposals(out / name)
        assert np.array_equal(a.superpixels, b.superpixels)
        assert (a.membership != b.membership).nnz == 0 and np.array_equal(a.scores, b.scores)
    index = json.loads((out / "index.json").read_text())["images"]
    assert len(index) == 30


# ---- mine ------------------------------------------------------------------------------------
MINE_SETS = ["solver.max_iter=16", "solver.ims_per_batch=1", "solver.checkpoint_period=2",
             "solver.warmup_iters=2", "solver.steps=[12]", "tag_warmup.iters=6",
             "tag_warmup.batch=2",
             "tag_warmup.items=1", "mining.fc_dim=32", "mining.oicr_heads=2",
             "input.train_scales=[64,80]", "input.test_scales=[64]", "input.max_proposals=80"]


@pytest.mark.slow
def test_mine_killed_at_random_points_resumes_bit_identically(tmp_path, synth_dir,
                                                               synth_proposals):
    rng = random.Random(4)

    def cmd(out: Path, *extra: str) -> list[str]:
        args = ["mine", "--dataset", synth_dir / "annotations/panoptic_train.json",
                "--images", synth_dir / "images", "--proposals", synth_proposals,
                "--out", out, "--quiet", *extra]
        for s in MINE_SETS:
            args += ["--set", s]
        return jtsm(*args)

    ref = tmp_path / "ref"
    finish(cmd(ref))
    out = tmp_path / "killed"
    ck = out / "checkpoints"

    points = [checkpoint_reached(ck, "warmup", rng.choice([2, 4])),  # the tag warm-up
              checkpoint_reached(ck, "mine", rng.choice([2, 4, 6])),  # during MIL training
              checkpoint_reached(ck, "mine", rng.choice([10, 12, 14])),
              lambda: (out / "model_final.pt").exists()]  # while writing the mined outputs
    killed = 0
    for i, ready in enumerate(points):
        killed += kill_when(cmd(out, *(["--resume"] if i else [])), ready, rng.uniform(0, 0.3))
        assert_whole(out, cut_metrics_ok=True)
    assert killed >= 3, "the runs finished before they could be killed"
    finish(cmd(out, "--resume"))
    assert_whole(out)
    a, b = load_checkpoint(ref / "model_final.pt"), load_checkpoint(out / "model_final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    same_panoptic(ref / "mined/panoptic.json", out / "mined/panoptic.json")
    for name in ("mined/detections.json", "presence.json"):
        assert json.loads((ref / name).read_text()) == json.loads((out / name).read_text())
    iters = [(r["stage"], r["iteration"]) for r in map(
        json.loads, (out / "metrics.jsonl").read_text().splitlines())]
    assert iters == [(r["stage"], r["iteration"]) for r in map(
        json.loads, (ref / "metrics.jsonl").read_text().splitlines())]


# ---- refine ---------------------------------------------------------------------------------
REFINE_SETS = ["solver.max_iter=12", "solver.checkpoint_period=2", "solver.warmup_iters=2",
               "solver.steps=[9]", "refine.mask_channels=8", "refine.semantic_channels=8",
               "refine.mask_convs=1", "refine.mask_size=7"]


@pytest.mark.slow
def test_refine_killed_at_random_points_resumes_bit_identically(tmp_path, mined_run, synth_dir,
                                                                 synth_proposals):
    rng = random.Random(5)

    def cmd(out: Path, *extra: str) -> list[str]:
        args = ["refine", "--run", mined_run, "--pseudo", mined_run / "mined/panoptic.json",
                "--images", synth_dir / "images", "--proposals", synth_proposals,
                "--out", out, "--quiet", *extra]
        for s in REFINE_SETS:
            args += ["--set", s]
        return jtsm(*args)

    ref = tmp_path / "ref"
    finish(cmd(ref))
    out = tmp_path / "killed"
    ck = out / "checkpoints"
    killed = 0
    for i, it in enumerate(sorted(rng.sample([2, 4, 6, 8, 10], 3))):
        killed += kill_when(cmd(out, *(["--resume"] if i else [])),
                            checkpoint_reached(ck, "refine", it),
                            rng.uniform(0, 0.3))
        assert_whole(out, cut_metrics_ok=True)
    assert killed >= 2, "the runs finished before they could be killed"
    finish(cmd(out, "--resume"))
    assert_whole(out)
    a, b = load_checkpoint(ref / "model_final.pt"), load_checkpoint(out / "model_final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
