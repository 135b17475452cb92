"""Shared check of prediction folders: ``jtsm eval`` equals panopticapi, AP evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from jtsm_cli.main import cli


def assert_eval_matches_references(gt: Path, pred: Path) -> None:
    """``jtsm eval --metric pq`` on ``pred/panoptic.json`` equals panopticapi's ``pq_compute``
    (All / Things / Stuff, to 1e-9), and ``--metric ap`` reads ``pred/instances.json``."""
    r = CliRunner().invoke(cli, ["eval", "--metric", "pq", "--gt", str(gt), "--pred",
                                 str(pred / "panoptic.json"), "--json", "--workers", "1"])
    assert r.exit_code == 0, r.output
    ours = json.loads(r.output)
    from panopticapi.evaluation import pq_compute

    ref = pq_compute(str(gt), str(pred / "panoptic.json"), str(gt.with_suffix("")),
                     str(pred / "panoptic"))
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["pq"] == pytest.approx(ref[group]["pq"], abs=1e-9)
    r = CliRunner().invoke(cli, ["eval", "--metric", "ap", "--gt", str(gt), "--pred",
                                 str(pred / "instances.json"), "--json"])
    assert r.exit_code == 0, r.output
