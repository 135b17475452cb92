"""benchmarks/proposal_recall.py: per-class recall of proposal settings, stores reused."""

from __future__ import annotations

import re

import numpy as np
import pytest
from proposal_recall import main, run, union

from jtsm.data.synth import write_synth_dataset
from jtsm.data.synth_photo import PHOTO_THINGS, PhotoConfig
from jtsm.structures import ProposalSet

KEYS = ["single", "fz100", "single+fz100"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("photo")
    write_synth_dataset(root, 3, 0, PhotoConfig(height=48, width=72), seed=2)
    return root


def _values(rows):
    for row in rows:
        for groups in [row["classes"], *(row["read"] or {}).values()]:
            for c in groups.values():
                yield from (c["recall@0.5"], c["recall@0.7"], c["abo"])


def test_table_has_a_row_per_setting_and_a_store_is_reused(data, tmp_path, capsys):
    out = tmp_path / "stores"
    assert main([str(data), "--out", str(out), "--only", *KEYS]) == 0
    first = capsys.readouterr().out
    assert "single: 3 images made, 0 reused" in first
    assert main([str(data), "--out", str(out), "--only", *KEYS]) == 0
    second = capsys.readouterr().out
    assert "single: 0 images made, 3 reused" in second
    assert "fz100: 0 images made, 3 reused" in second
    for text in (first, second):
        blocks = [b for b in text.split("\n\n") if b.startswith(("recall@", "ABO"))]
        assert len(blocks) == 4  # recall@0.5, recall@0.7, ABO, what mining reads
        for block in blocks:
            lines = block.strip().splitlines()
            head = lines[1].strip("|").split("|")
            assert [h.strip() for h in head[-7:]] == [*PHOTO_THINGS, "things", "stuff"]
            rows = [line.strip("|").split("|") for line in lines[3:]]
            assert [r[0].strip() for r in rows] == KEYS
            assert all(len(r) == len(head) for r in rows)
            for r in rows:
                for v in r[-7:]:
                    v = v.strip()
                    assert v == "-" or 0.0 <= float(v) <= 100.0
        union_read = blocks[3].strip().splitlines()[-1]
        assert re.fullmatch(r"\| single\+fz100( \| -){7} \|", union_read)  # scores differ
    # a reused store still reports its time and the same figures
    _, rows = run(data, out, KEYS, read_max=[2, 300], say=lambda *_: None)
    assert [r["computed"] for r in rows] == [0, 0, 0] and [r["reused"] for r in rows] == [3, 3, 6]
    assert list(rows[0]["read"]) == [2, 300] and rows[2]["read"] is None
    for row in rows[:2]:  # reading fewer proposals never covers more
        for name, c in row["read"][2].items():
            assert c["recall@0.5"] <= row["read"][300][name]["recall@0.5"]
            assert row["read"][300][name]["abo"] <= row["classes"][name]["abo"] + 1e-12
    assert all(r["seconds"] is not None and r["seconds"] > 0 for r in rows)
    assert rows[2]["seconds"] == pytest.approx(rows[0]["seconds"] + rows[1]["seconds"])
    assert all(0.0 <= v <= 1.0 for v in _values(rows))
    # the union covers every segment at least as well as either setting
    for name, c in rows[2]["classes"].items():
        assert c["abo"] >= max(rows[0]["classes"][name]["abo"],
                               rows[1]["classes"][name]["abo"]) - 1e-12
    assert rows[2]["proposals"] <= rows[0]["proposals"] + rows[1]["proposals"]


def test_union_keeps_the_distinct_masks_of_both():
    a = np.zeros((4, 6), np.int32)
    a[:, 3:] = 1  # left / right halves
    b = np.zeros((4, 6), np.int32)
    b[2:] = 1  # top / bottom halves
    pa = ProposalSet(a, np.array([[1, 0], [0, 1], [1, 1]], bool), np.array([0.9, 0.5, 0.1]))
    pb = ProposalSet(b, np.array([[1, 0], [1, 1]], bool), np.array([0.8, 0.2]))
    u = union(pa, pb)
    masks = {m.tobytes() for m in u.masks()}
    assert len(u) == 4  # the whole image is in both
    assert masks == {m.tobytes() for m in [*pa.masks(), *pb.masks()]}
    assert np.all(np.diff(u.scores) <= 0)


def test_unknown_setting_is_named(data, tmp_path):
    with pytest.raises(SystemExit, match="unknown setting 'nope'"):
        run(data, tmp_path / "s", ["fast+nope"], say=lambda *_: None)
