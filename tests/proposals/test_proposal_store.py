"""The proposal store: exact round trips, clear errors, atomic files, the index."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from jtsm.errors import DataError
from jtsm.proposals.store import ProposalStore, load_proposals, save_proposals
from jtsm.structures import ProposalSet


def _random_set(seed: int, h: int = 13, w: int = 17, s: int = 20, p: int = 9) -> ProposalSet:
    rng = np.random.default_rng(seed)
    spx = rng.integers(0, s, (h, w)).astype(np.int32)
    member = rng.random((p, s)) < rng.random()
    if p:
        member[rng.integers(0, p)] = False  # an empty row
    return ProposalSet(spx, sp.csr_matrix(member), rng.random(p).astype(np.float32))


def _same(a: ProposalSet, b: ProposalSet) -> None:
    assert np.array_equal(a.superpixels, b.superpixels)
    assert a.membership.shape == b.membership.shape
    assert (a.membership != b.membership).nnz == 0
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.boxes, b.boxes)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 12), st.sampled_from([3, 300, 70_000]))
def test_round_trip_is_exact(tmp_path_factory, seed, p, s):
    ps = _random_set(seed, s=s, p=p)
    path = tmp_path_factory.mktemp("store") / "x.npz"
    save_proposals(path, ps, "x.jpg")
    _same(ps, load_proposals(path, expect_size=ps.image_size))


def test_store_paths_save_load_and_topk(tmp_path):
    store = ProposalStore(tmp_path / "props")
    ps = _random_set(0).sorted()
    assert store.path_for("a/b/c.jpg") == (tmp_path / "props" / "a" / "b" / "c.jpg.npz").resolve()
    assert not store.exists("a/b/c.jpg")
    store.save("a/b/c.jpg", ps)
    assert store.exists("a/b/c.jpg")
    _same(ps, store.load("a/b/c.jpg"))
    top = store.load("a/b/c.jpg", max_proposals=3)
    assert len(top) == 3 and np.array_equal(top.scores, np.sort(ps.scores)[::-1][:3])
    assert [p.name for p in (tmp_path / "props" / "a" / "b").iterdir()] == ["c.jpg.npz"]  # no temp
    for bad in ("../escape.jpg", "/abs.jpg"):
        with pytest.raises(DataError):
            store.path_for(bad)


def test_missing_corrupt_and_wrong_size_files_name_the_file(tmp_path):
    store = ProposalStore(tmp_path)
    with pytest.raises(DataError, match="no such proposal file") as e:
        store.load("missing.jpg")
    assert "missing.jpg.npz" in str(e.value)
    ps = _random_set(1)
    path = store.save("img.png", ps)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated by a crash of some other tool
    with pytest.raises(DataError, match="corrupt") as e:
        store.load("img.png")
    assert str(path) in str(e.value)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=str(path)):
        store.load("img.png")
    np.savez(path, superpixels=np.zeros((2, 2)))  # an npz of something else
    with pytest.raises(DataError, match="missing"):
        store.load("img.png")
    store.save("img.png", ps)
    with pytest.raises(DataError, match=r"17x13 image, but the image is 20x13"):
        store.load("img.png", expect_size=(13, 20))


def test_file_is_compact(tmp_path):
    # 2000 proposals that are index ranges of 4000 superpixels on a 300x400 map
    rng = np.random.default_rng(0)
    spx = (np.arange(300 * 400).reshape(300, 400) // 30).astype(np.int32)
    starts = rng.integers(0, 3500, 2000)
    lengths = rng.integers(1, 500, 2000)
    rows = [np.arange(a, a + n) for a, n in zip(starts, lengths)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    m = sp.csr_matrix((np.ones(indptr[-1], bool), np.concatenate(rows), indptr), (2000, 4000))
    ps = ProposalSet(spx, m, rng.random(2000))
    path = tmp_path / "big.npz"
    save_proposals(path, ps)
    raw = m.nnz * 4 + spx.size * 4
    assert path.stat().st_size < raw / 20
    _same(ps, load_proposals(path))


def test_index_merges_shards(tmp_path):
    store = ProposalStore(tmp_path)
    ps = _random_set(2)
    store.write_index({"a.jpg": store.entry("a.jpg", ps)}, "index.shard0-of-2")
    store.save("c/d.png", ps)
    assert store.read_entry("c/d.png") == store.entry("c/d.png", ps)  # header only
    store.path_for("c/d.png").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="d.png.npz"):
        store.read_entry("c/d.png")
    store.write_index({"b.jpg": store.entry("b.jpg", ps)}, "index.shard1-of-2")
    idx = store.index()
    assert set(idx) == {"a.jpg", "b.jpg"}
    assert idx["a.jpg"] == {"file": "a.jpg.npz", "proposals": 9, "height": 13, "width": 17}
    (tmp_path / "index.json").write_text("[1]")
    with pytest.raises(DataError, match="index.json"):
        store.index()
