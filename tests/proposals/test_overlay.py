"""Overlay of segmentations and merging of cells no proposal separates."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from jtsm.proposals.overlay import compact_columns, overlay
from jtsm.structures import ProposalSet


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_overlay_cells_are_the_unique_label_tuples(seed, n_maps):
    rng = np.random.default_rng(seed)
    maps = [rng.integers(0, rng.integers(1, 6), (7, 9)) for _ in range(n_maps)]
    cells, cell_labels = overlay(maps)
    tuples = np.stack([m.ravel() for m in maps], 1)
    # same cell <=> same tuple of labels
    _, want = np.unique(tuples, axis=0, return_inverse=True)
    got = cells.ravel()
    assert len(np.unique(got)) == len(np.unique(want.ravel()))
    assert np.array_equal(got[:, None] == got[None, :], want.ravel()[:, None] == want.ravel()[None])
    # every region of every map is exactly the union of the cells carrying its label
    for i, m in enumerate(maps):
        assert np.array_equal(cell_labels[i][cells], m)


def test_compact_columns_keeps_every_mask():
    rng = np.random.default_rng(0)
    cells = rng.integers(0, 40, (20, 30)).astype(np.int32)
    dense = rng.random((5, 40)) < 0.3  # 5 proposals tell at most 16 cell kinds apart
    dense[0] = True  # a proposal with everything
    member = sp.csr_matrix(dense)
    before = ProposalSet(cells, member)
    new_cells, new_member = compact_columns(cells, member)
    after = ProposalSet(new_cells, new_member)
    assert after.num_superpixels < 40
    assert np.array_equal(before.masks(), after.masks())
    # no two remaining cells have identical membership columns
    cols = new_member.toarray().T
    assert len(np.unique(cols, axis=0)) == len(cols)
