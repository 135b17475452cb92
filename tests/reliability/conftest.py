"""Shared data of the reliability matrix: a tiny synth dataset, its proposals, a mining run.

Each ``test_caseNN_*.py`` reproduces one numbered fault of the bookkeeping between stages
(runs and stores that must know what made them) and checks what happens now.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

TINY = ["solver.max_iter=2", "solver.ims_per_batch=1", "solver.warmup_iters=0",
        "solver.steps=[1]", "mining.fc_dim=16", "mining.oicr_heads=1",
        "input.train_scales=[64]", "input.test_scales=[64]", "input.max_proposals=40",
        "proposals=felzenszwalb"]


def jtsm(*args: object) -> tuple[int, str]:
    """Run the CLI in this process; returns (exit code, stdout + stderr)."""
    from jtsm_cli.main import cli

    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="session")
def rel_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 train + 3 val synth images of 64x72 px with Felzenszwalb proposals (``props``)."""
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.proposals.runner import list_images, run_proposals

    root = tmp_path_factory.mktemp("rel")
    write_synth_dataset(root, 6, 3, SynthConfig(height=64, width=72), seed=5)
    for split in ("train", "val"):
        items = list_images(root / "images", root / f"annotations/panoptic_{split}.json")
        list(run_proposals(items, root / "props", method="felzenszwalb", max_proposals=150,
                           workers=1))
    return root


@pytest.fixture(scope="session")
def rel_run(rel_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished mining run on ``rel_data`` (2 iterations)."""
    from jtsm.config import load_config
    from jtsm.engine.mine import run_mine

    out = tmp_path_factory.mktemp("runs") / "mine"
    run_mine(load_config(overrides=TINY), rel_data / "annotations/panoptic_train.json",
             rel_data / "images", rel_data / "props", out)
    return out


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def _one_thread_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


sys.path.insert(0, os.path.dirname(__file__))
