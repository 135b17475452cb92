"""The work after training is shared by the ranks: a 2-worker mining run finishes under a
process-group timeout far shorter than scoring every image on one rank would take, and writes
the same mined outputs, byte for byte, as one process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["solver.max_iter=2", "solver.ims_per_batch=2", "solver.warmup_iters=0",
        "solver.steps=[1]", "mining.fc_dim=16", "mining.oicr_heads=1", "tag_warmup.iters=0",
        "input.train_scales=[64]", "input.max_proposals=150", "proposals=felzenszwalb",
        # five test scales: scoring the 80 images dominates the run
        "input.test_scales=[64,112,160,208,256]"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.proposals.runner import list_images, run_proposals

    root = tmp_path_factory.mktemp("dist")
    write_synth_dataset(root, 80, 2, SynthConfig(height=64, width=72), seed=5)
    items = list_images(root / "images", root / "annotations/panoptic_train.json")
    list(run_proposals(items, root / "props", method="felzenszwalb", max_proposals=150,
                       workers=1))
    return root


def _mine(data: Path, out: Path, nproc: int, timeout_s: float | None = None
          ) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if timeout_s is not None:
        env["JTSM_DIST_TIMEOUT"] = str(timeout_s)
    sets = [w for kv in TINY for w in ("--set", kv)]
    return subprocess.run(
        [sys.executable, "-m", "jtsm_cli", "mine", "--dataset",
         str(data / "annotations/panoptic_train.json"), "--images", str(data / "images"),
         "--proposals", str(data / "props"), "--out", str(out), "--nproc", str(nproc),
         "-q", *sets], capture_output=True, text=True, timeout=600, env=env)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_workers_share_the_scoring_under_a_short_timeout(data, tmp_path):
    t0 = time.monotonic()
    one = _mine(data, tmp_path / "one", 1)
    alone = time.monotonic() - t0
    assert one.returncode == 0, one.stderr
    # a third of what one process needs: rank 0 scoring every image while rank 1 waits at a
    # barrier would outlast it; each rank scoring half, they meet within it
    timeout_s = max(3.0, alone / 3)
    two = _mine(data, tmp_path / "two", 2, timeout_s)
    assert two.returncode == 0, two.stderr
    mined_one, mined_two = _files(tmp_path / "one/mined"), _files(tmp_path / "two/mined")
    assert len([k for k in mined_one if k.endswith(".png")]) == 80
    assert mined_one == mined_two  # json, detections and every PNG; no part left behind
    assert ((tmp_path / "one/presence.json").read_bytes()
            == (tmp_path / "two/presence.json").read_bytes())


def test_a_timeout_names_the_rank_and_the_cause(data, tmp_path):
    # 1 ms: the two workers cannot even meet in time, whatever the machine's load
    r = _mine(data, tmp_path / "run", 2, 0.001)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: rank ") and "time" in last.lower()
    assert "Traceback" not in r.stderr
