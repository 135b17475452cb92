"""benchmarks/levers.py: how a lever is named, which levers may share the base run's warm-up,
and the table it prints (the runs themselves are mine/predict/eval, tested there)."""

from __future__ import annotations

import argparse

import pytest
from levers import main, parse_lever, shares_warmup, table

from jtsm.config import load_config


def test_a_lever_is_a_name_and_config_overrides():
    assert parse_lever("pool-14=mining.pool_size=14") == ("pool-14", {"mining.pool_size": "14"})
    assert parse_lever("two=a.b=1, c.d=x") == ("two", {"a.b": "1", "c.d": "x"})
    assert parse_lever("same=") == ("same", {})
    for bad in ("=a.b=1", "x=a.b"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_lever(bad)


def test_only_levers_the_warm_up_does_not_read_share_it():
    base = load_config("synth")
    for key, value in (("mining.pool_size", "14"), ("input.min_proposal_area", "0.002"),
                       ("input.max_proposals", "100"), ("mining.oicr_heads", "2")):
        assert shares_warmup(load_config(overrides={key: value}, base=base), base), key
    for key, value in (("backbone.width", "48"), ("tag_warmup.iters", "10"), ("seed", "1"),
                       ("input.train_scales", "[128]"), ("input.hsv_jitter", "1.2")):
        assert not shares_warmup(load_config(overrides={key: value}, base=base), base), key


def test_the_table_has_a_row_per_lever_and_a_column_per_thing_class():
    def pq(v):
        return {"All": {"pq": v}, "Things": {"pq": v / 2}, "Stuff": {"pq": v * 1.5},
                "per_class": {"lamp": {"pq": v}, "sky": {"pq": 1.0}},
                "corloc": {"corloc": 0.4, "per_class": {"lamp": 0.4}}}

    out = table([("base", pq(0.3), float("nan"), True, None),
                 ("x", pq(0.5), 12.0, False, None)])
    lines = out.splitlines()
    assert lines[2] == "| base | 30.0 | 15.0 | 45.0 | 40.0 | - |"
    assert lines[3] == "| x | 50.0 | 25.0 | 75.0 | 40.0 | 12 |"
    assert lines[5] == "| lever | lamp |"  # things only: the classes CorLoc scores
    assert lines[7:] == ["| base | 30.0 |", "| x | 50.0 |"]


def test_a_base_without_a_finished_run_is_refused(tmp_path, capsys):
    assert main(["--base", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no finished mining run" in capsys.readouterr().err
