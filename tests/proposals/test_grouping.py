"""Hierarchical grouping: the fast merge loop against a slow, obviously-correct reference."""

from __future__ import annotations

import numpy as np
import pytest

from jtsm.proposals.features import (
    adjacency,
    convert_colour,
    pixel_bins,
    region_boxes,
    region_histograms,
)
from jtsm.proposals.grouping import Hierarchy, group
from jtsm.proposals.overlay import felzenszwalb_segment


def _image(seed: int, h: int = 40, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    for _ in range(12):  # random coloured rectangles over noise
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        img[y0 : y0 + rng.integers(4, 16), x0 : x0 + rng.integers(4, 16)] = rng.integers(0, 255, 3)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _reference(labels, pb, use_c, use_t, use_s, use_f):
    """Greedy grouping recomputing every similarity from pixels at every step."""
    h, w = labels.shape
    flat = labels.reshape(-1)
    regions = {i: {i} for i in range(int(labels.max()) + 1)}
    edges = {tuple(e) for e in adjacency(labels).tolist()}
    ys, xs = np.divmod(np.arange(h * w), w)

    def feats(leaves):
        m = np.isin(flat, list(leaves))
        b = pb.bins[m]
        col = np.bincount(b[:, : pb.n_colour].ravel(), minlength=pb.dims)[: pb.colour_dims]
        tex = np.bincount(b[:, pb.n_colour :].ravel(), minlength=pb.dims)[pb.colour_dims :]
        box = (xs[m].min(), ys[m].min(), xs[m].max() + 1, ys[m].max() + 1)
        return col / col.sum(), tex / tex.sum(), m.sum(), box

    def sim(a, b):
        ca, ta, sa, ba = feats(regions[a])
        cb, tb, sb, bb = feats(regions[b])
        s = 0.0
        if use_c:
            s += np.minimum(ca, cb).sum()
        if use_t:
            s += np.minimum(ta, tb).sum()
        if use_s:
            s += 1 - (sa + sb) / (h * w)
        if use_f:
            bw = max(ba[2], bb[2]) - min(ba[0], bb[0])
            bh = max(ba[3], bb[3]) - min(ba[1], bb[1])
            s += 1 - (bw * bh - sa - sb) / (h * w)
        return s

    merged = []
    nxt = len(regions)
    while edges:
        a, b = max(edges, key=lambda e: sim(*e))
        regions[nxt] = regions.pop(a) | regions.pop(b)
        merged.append(frozenset(regions[nxt]))
        new_edges = set()
        for x, y in edges:
            x2 = nxt if x in (a, b) else x
            y2 = nxt if y in (a, b) else y
            if x2 != y2:
                new_edges.add((min(x2, y2), max(x2, y2)))
        edges = new_edges
        nxt += 1
    return merged


@pytest.mark.parametrize("sims", ["CTSF", "TSF", "F", "S", "C"])
@pytest.mark.parametrize("seed", [0, 1])
def test_group_matches_slow_reference(seed, sims):
    img = _image(seed)
    conv, ranges = convert_colour(img, "hsv")
    labels = felzenszwalb_segment(conv, 30)
    r = int(labels.max()) + 1
    assert 5 < r < 60
    pb = pixel_bins(conv, ranges)
    hist = region_histograms(labels, r, pb)
    parts = []
    if "C" in sims:
        parts.append(hist[:, : pb.colour_dims])
    if "T" in sims:
        parts.append(hist[:, pb.colour_dims :])
    feats = np.concatenate(parts, 1) if parts else np.zeros((r, 0), np.float32)
    sizes = np.bincount(labels.ravel(), minlength=r)
    tree = group(feats, sizes, region_boxes(labels, r), adjacency(labels), labels.size,
                 "S" in sims, "F" in sims)
    got = [frozenset(tree.leaves(r + j).tolist()) for j in range(len(tree.children))]
    want = _reference(labels, pb, "C" in sims, "T" in sims, "S" in sims, "F" in sims)
    assert len(got) == r - 1
    assert got == want


def test_hierarchy_leaves_are_contiguous_slices():
    # leaves 0..4; merges: (1,3)->5, (0,5)->6, (2,4)->7, (6,7)->8
    tree = Hierarchy.from_children(np.array([[1, 3], [0, 5], [2, 4], [6, 7]]), 5)
    assert tree.n_nodes == 9
    assert sorted(tree.leaves(5).tolist()) == [1, 3]
    assert sorted(tree.leaves(6).tolist()) == [0, 1, 3]
    assert sorted(tree.leaves(7).tolist()) == [2, 4]
    assert sorted(tree.leaves(8).tolist()) == [0, 1, 2, 3, 4]
    assert all(tree.leaves(i).tolist() == [i] for i in range(5))
    assert tree.count.tolist() == [1, 1, 1, 1, 1, 2, 3, 2, 5]


def test_group_single_region_and_features_sum_to_one():
    labels = np.zeros((5, 6), np.int32)
    tree = group(np.ones((1, 2), np.float32), np.array([30]), np.array([[0, 0, 6, 5]]),
                 np.zeros((0, 2), np.int64), 30)
    assert tree.n_nodes == 1 and len(tree.children) == 0
    conv, ranges = convert_colour(_image(3), "lab")
    pb = pixel_bins(conv, ranges)
    labels = felzenszwalb_segment(conv, 50)
    hist = region_histograms(labels, int(labels.max()) + 1, pb)
    np.testing.assert_allclose(hist[:, : pb.colour_dims].sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(hist[:, pb.colour_dims :].sum(1), 1, rtol=1e-5)


def test_histograms_of_many_segmentations_equal_one_by_one():
    from jtsm.proposals.features import region_histograms_many

    conv, ranges = convert_colour(_image(5), "rgi")
    pb = pixel_bins(conv, ranges)
    maps = [felzenszwalb_segment(conv, k) for k in (20, 50, 120)]
    for labels, hist in zip(maps, region_histograms_many(maps, pb)):
        want = region_histograms(labels, int(labels.max()) + 1, pb)
        np.testing.assert_allclose(hist, want, rtol=1e-5, atol=1e-7)
