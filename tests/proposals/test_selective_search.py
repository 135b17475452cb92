"""Selective search keeping masks, on real photos (skimage.data) downscaled for speed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from jtsm.proposals.features import convert_colour
from jtsm.proposals.overlay import felzenszwalb_segment
from jtsm.proposals.selective_search import STRATEGY_SETS, StrategySet, selective_search
from jtsm.structures import ProposalSet

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def _photo(name: str, side: int = 250) -> np.ndarray:
    im = getattr(data, name)()
    s = side / max(im.shape[:2])
    return cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)


def _mask_codes(masks_or_ps, weights: np.ndarray) -> set[int]:
    """An exact-enough fingerprint of masks: sum of random 40-bit pixel weights."""
    if hasattr(masks_or_ps, "membership"):
        ps = masks_or_ps
        sums = np.zeros(ps.num_superpixels, np.int64)
        np.add.at(sums, ps.superpixels.ravel(), weights.ravel())
        m = ps.membership.tocsr()
        return {int(sums[m.indices[m.indptr[i] : m.indptr[i + 1]]].sum()) for i in range(len(ps))}
    return {int(weights[mask].sum()) for mask in masks_or_ps}


@pytest.fixture(scope="module")
def photos():
    return {n: _photo(n) for n in PHOTOS}


@pytest.fixture(scope="module")
def fast_all(photos):
    return {n: selective_search(im, "fast", max_proposals=None) for n, im in photos.items()}


@pytest.mark.parametrize("name", PHOTOS)
def test_hundreds_to_thousands_of_distinct_proposals(fast_all, name):
    ps = fast_all[name]
    assert 300 <= len(ps) <= 10_000
    # distinct masks: no pair of proposals has mask IoU 1
    iou = ps.mask_iou()
    np.fill_diagonal(iou, 0)
    assert iou.max() < 1.0
    assert np.all(ps.areas() > 0)
    assert np.all(np.diff(ps.scores) <= 0) and ps.scores.max() <= 1 and ps.scores.min() > 0
    # boxes tracked during grouping == extents of the member superpixels
    recomputed = ProposalSet(ps.superpixels, ps.membership, ps.scores).boxes
    np.testing.assert_array_equal(ps.boxes, recomputed)


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_whole_image_and_every_initial_region_are_proposals(photos, fast_all, name):
    im = photos[name]
    ps = fast_all[name]
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 1 << 40, im.shape[:2], dtype=np.int64)
    codes = _mask_codes(ps, weights)
    full = int(weights.sum())
    assert full in codes
    assert full in _mask_codes(ps[:30], weights)  # the whole image ranks near the top
    strat = STRATEGY_SETS["fast"]
    n_initial = 0
    for space in strat.spaces:
        conv, _ = convert_colour(im, space)
        for k in strat.ks:
            labels = felzenszwalb_segment(conv, k, strat.sigma)
            r = int(labels.max()) + 1
            sums = np.zeros(r, np.int64)
            np.add.at(sums, labels.ravel(), weights.ravel())
            assert set(sums.tolist()) <= codes
            n_initial += r
    assert n_initial > 100


def test_masks_are_unions_of_superpixels_and_merged_regions_connected(photos):
    ps = selective_search(photos["chelsea"], "single", max_proposals=None)
    labels = felzenszwalb_segment(convert_colour(photos["chelsea"], "hsv")[0], 100)
    r = int(labels.max()) + 1
    assert len(ps) == 2 * r - 1  # one hierarchy: R initial regions + R-1 merges, all distinct
    masks = ps.masks()
    # mask == union of its superpixels (checked pixel by pixel on the dense masks)
    member = ps.membership.toarray()
    for i in range(0, len(ps), 7):
        assert np.array_equal(masks[i], member[i][ps.superpixels])
        # every initial region is entirely inside or outside a proposal
        inside = np.bincount(labels.ravel(), weights=masks[i].ravel(), minlength=r)
        size = np.bincount(labels.ravel(), minlength=r)
        assert np.all((inside == 0) | (inside == size))
        n_comp, _ = cv2.connectedComponents(masks[i].astype(np.uint8), connectivity=8)
        assert n_comp == 2  # background + one 8-connected region
    np.testing.assert_array_equal(ps.boxes, ps[np.arange(len(ps))]._member_boxes())


def test_max_proposals_seed_and_custom_strategies(photos):
    im = photos["rocket"]
    a = selective_search(im, "fast", max_proposals=200, seed=3)
    b = selective_search(im, "fast", max_proposals=200, seed=3)
    c = selective_search(im, "fast", max_proposals=200, seed=4)
    assert len(a) == 200
    assert np.array_equal(a.masks(range(20)), b.masks(range(20)))
    assert not np.array_equal(a.scores, c.scores)
    custom = selective_search(im, StrategySet(("lab", "i"), (80,), ("F", "S")), None)
    assert len(custom) > 100
    with pytest.raises(ValueError, match="similarity"):
        selective_search(im, StrategySet(("hsv",), (80,), ("XYZ",)))
    with pytest.raises(ValueError, match="mode"):
        selective_search(im, "slowest")
    with pytest.raises(ValueError, match="RGB uint8"):
        selective_search(im.astype(np.float32))


def test_tiny_and_flat_images():
    flat = np.full((9, 11, 3), 120, np.uint8)
    ps = selective_search(flat, "fast")
    assert len(ps) == 1 and ps.areas()[0] == 99
    one = selective_search(np.zeros((1, 1, 3), np.uint8), "quality")
    assert len(one) == 1 and one.boxes[0].tolist() == [0, 0, 1, 1]
