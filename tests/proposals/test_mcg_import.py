"""MCG .mat import: both MATLAB formats round-trip; top 4000, duplicates and empty dropped."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from jtsm.errors import DataError
from jtsm.proposals.mcg import read_mcg


def _mcg_like(seed: int, h: int = 24, w: int = 31, s: int = 40, p: int = 60):
    rng = np.random.default_rng(seed)
    spx = rng.integers(1, s + 1, (h, w)).astype(np.uint16)
    spx.ravel()[:s] = np.arange(1, s + 1)  # every id used
    distinct: dict[tuple[int, ...], None] = {}
    while len(distinct) < p:
        pick = rng.choice(np.arange(1, s + 1), rng.integers(1, 8), replace=False)
        distinct[tuple(sorted(pick.tolist()))] = None
    labels = [np.array(t) for t in distinct]
    scores = rng.random(p)
    return spx, labels, scores


def write_mat_v5(path: Path, spx, labels, scores) -> None:
    cell = np.empty((len(labels), 1), dtype=object)
    for i, lab in enumerate(labels):
        cell[i, 0] = np.asarray(lab, np.uint32).reshape(1, -1)
    scipy.io.savemat(path, {"superpixels": spx, "labels": cell,
                            "scores": np.asarray(scores, np.float64).reshape(-1, 1)})


def write_mat_v73(path: Path, spx, labels, scores) -> None:
    """What MATLAB's ``save -v7.3`` writes: HDF5 with a 512-byte MAT header, arrays transposed,
    the cell array as object references into ``#refs#``."""
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("superpixels", data=np.asarray(spx).T)
        refs = f.create_group("#refs#")
        ref_arr = np.empty((1, len(labels)), dtype=h5py.ref_dtype)
        for i, lab in enumerate(labels):
            ds = refs.create_dataset(f"l{i}", data=np.asarray(lab, np.float64).reshape(-1, 1).T)
            ref_arr[0, i] = ds.ref
        f.create_dataset("labels", data=ref_arr, dtype=h5py.ref_dtype)
        f.create_dataset("scores", data=np.asarray(scores, np.float64).reshape(1, -1))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")


def _expected_masks(spx, labels):
    return [np.isin(spx, lab) for lab in labels]


@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73])
def test_round_trip_both_mat_versions(tmp_path, writer):
    spx, labels, scores = _mcg_like(0)
    path = tmp_path / "img.mat"
    writer(path, spx, labels, scores)
    ps = read_mcg(path, max_proposals=None)
    assert ps.image_size == spx.shape
    assert np.array_equal(ps.superpixels, spx.astype(np.int32) - 1)
    order = np.argsort(-scores, kind="stable")
    assert len(ps) == len(labels)
    np.testing.assert_allclose(ps.scores, scores[order].astype(np.float32))
    want = _expected_masks(spx, labels)
    masks = ps.masks()
    for j, i in enumerate(order):
        assert np.array_equal(masks[j], want[i])


@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73])
def test_top_4000_duplicates_and_empty_dropped(tmp_path, writer):
    rng = np.random.default_rng(1)
    s = 30
    spx = (np.arange(20 * 30).reshape(20, 30) % s + 1).astype(np.uint32)
    labels = [np.flatnonzero(rng.random(s) < 0.5) + 1 for _ in range(4200)]
    labels[5] = labels[3].copy()  # a duplicate
    labels[7] = np.zeros(0)  # an empty proposal
    scores = rng.random(len(labels))
    scores[5] = scores[3] - 1e-3
    path = tmp_path / "many.mat"
    writer(path, spx, labels, scores)
    ps = read_mcg(path)
    assert len(ps) == 4000
    assert np.all(ps.areas() > 0)
    keys = {ps.membership.indices[ps.membership.indptr[i]:ps.membership.indptr[i + 1]].tobytes()
            for i in range(len(ps))}
    assert len(keys) == 4000
    kept_scores = set(ps.scores.tolist())
    assert np.float32(scores[5]).item() not in kept_scores
    assert np.float32(scores[7]).item() not in kept_scores


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DataError, match="no such MCG file"):
        read_mcg(tmp_path / "nope.mat")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        read_mcg(junk)
    spx, labels, scores = _mcg_like(2)
    scipy.io.savemat(tmp_path / "nolabels.mat", {"superpixels": spx, "scores": scores})
    with pytest.raises(DataError, match="'labels'"):
        read_mcg(tmp_path / "nolabels.mat")
    labels[0] = np.array([999])
    write_mat_v5(tmp_path / "range.mat", spx, labels, scores)
    with pytest.raises(DataError, match="outside 1..40"):
        read_mcg(tmp_path / "range.mat")
