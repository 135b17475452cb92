"""The benchmarks' realistic proposals: connected unions of superpixels of a real photo that
turn on as many feature cells as selective search's proposals do."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from realistic_proposals import (
    BASE,
    PHOTOS,
    base_proposals,
    grow_unions,
    on_cells,
    photo,
    realistic_proposals,
    superpixel_adjacency,
)

from jtsm.structures import ProposalSet


def _connected(rows: np.ndarray, adj: sp.csr_matrix) -> bool:
    sub = adj[rows][:, rows]
    n, _ = sp.csgraph.connected_components(sub, directed=False)
    return n == 1


def test_unions_are_distinct_connected_and_spread_in_size():
    labels = np.repeat(np.repeat(np.arange(100).reshape(10, 10), 4, 0), 4, 1)  # 10x10 cells
    adj = superpixel_adjacency(labels, 100)
    assert adj[0, 1] and adj[0, 10] and not adj[0, 11] and not adj[0, 0]
    m = grow_unions(labels, 300, np.random.default_rng(0))
    assert m.shape == (300, 100) and m.dtype == bool
    rows = [m.indices[m.indptr[i]: m.indptr[i + 1]] for i in range(m.shape[0])]
    assert len({r.tobytes() for r in rows}) == 300
    assert all(_connected(r, adj) for r in rows)
    sizes = np.diff(m.indptr)
    assert sizes.min() == 1 and sizes.max() >= 50  # single cells up to half the image


def test_proposals_at_a_training_scale():
    image, ps = realistic_proposals(480, 640, 500, seed=1)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert ps.superpixels.shape == (480, 640) and len(ps) == 500
    assert np.all(np.diff(ps.scores) <= 0) and np.all(ps.areas() > 0)
    base = base_proposals(500, 1)
    assert base.superpixels.shape == BASE
    # the same unions, upscaled: the area fractions are kept to within the resizing error
    frac = ps.areas() / ps.superpixels.size
    np.testing.assert_allclose(frac, base.areas() / base.superpixels.size, atol=2e-3)


@pytest.mark.parametrize("seed", [0, 3])
def test_as_many_on_cells_as_selective_search(seed):
    """Mean feature cells turned on per proposal (stride 16, 800x1066): within 0.7-1.5x of
    selective search's top 2000 on the same photo; the old random grid rectangles of
    bench_train_throughput turned on about 37, 4x fewer and more."""
    import cv2

    if not hasattr(cv2, "ximgproc"):
        pytest.skip("selective search (the reference) needs opencv-contrib")
    from jtsm.proposals.selective_search import selective_search

    _, ours = realistic_proposals(800, 1066, 2000, seed=seed)
    ref = selective_search(photo(PHOTOS[seed % 4], *BASE), "fast", max_proposals=2000)
    ref = ref.resize(800, 1066)
    ratio = on_cells(ours, 16).mean() / on_cells(ref, 16).mean()
    assert 0.7 < ratio < 1.5, ratio
    assert on_cells(ref, 16).mean() > 4 * 37


def test_on_cells_of_a_rectangle_are_its_box_cells():
    labels = np.zeros((64, 64), np.int32)
    labels[16:48, 8:40] = 1
    ps = ProposalSet(labels, sp.csr_matrix(np.array([[False, True], [True, True]])),
                     np.ones(2, np.float32))
    # pixels 16..47 round to cells 1..3 at stride 16 (1.0 .. 2.94), columns 8..39 to 1..2
    # (0.5 rounds away from zero to 1; 39/16 = 2.44); the whole image: all 4x4 cells
    assert on_cells(ps, 16).tolist() == [3 * 2, 16]
