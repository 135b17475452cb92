"""The Felzenszwalb baseline: every region, adjacent pair and connected triple, nothing else."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
from skimage import data

from jtsm.proposals.features import adjacency, convert_colour
from jtsm.proposals.felzenszwalb import felzenszwalb_proposals
from jtsm.proposals.overlay import felzenszwalb_segment


def test_regions_pairs_and_triples():
    im = cv2.resize(data.coffee(), (120, 80), interpolation=cv2.INTER_AREA)
    ps = felzenszwalb_proposals(im, k=60, max_proposals=None)
    labels = felzenszwalb_segment(convert_colour(im, "hsv")[0], 60)
    assert np.array_equal(ps.superpixels, labels)
    r = int(labels.max()) + 1
    assert r > 10
    edges = {tuple(e) for e in adjacency(labels).tolist()}
    nbrs = {i: set() for i in range(r)}
    for a, b in edges:
        nbrs[a].add(b)
        nbrs[b].add(a)
    want = {(i,) for i in range(r)} | edges
    for b in range(r):
        for a, c in itertools.combinations(sorted(nbrs[b]), 2):
            want.add(tuple(sorted((a, b, c))))
    m = ps.membership
    got = {tuple(m.indices[m.indptr[i]:m.indptr[i + 1]].tolist()) for i in range(len(ps))}
    assert got == want
    assert len(got) == len(ps)  # no duplicates
    assert np.all(np.diff(ps.scores) <= 0)
    assert np.all(ps.scores[: r] <= 1.0)
    capped = felzenszwalb_proposals(im, k=60, max_proposals=10)
    assert len(capped) == 10 and np.allclose(capped.scores, 1.0)  # single regions rank first
