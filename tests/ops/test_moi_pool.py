"""Shape-invariant MoIPool against brute-force loops (Eq. 5-8) and torchvision's RoIPool."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_helpers import random_proposals, ref_cell_on, ref_pool

from jtsm.ops import binned_max as bm
from jtsm.ops.boxes import inclusive_boxes
from jtsm.ops.moi_pool import (
    cell_on,
    compensation,
    moi_pool,
    pixel_cells,
    superpixel_cell_incidence,
)
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.structures import ProposalSet


def _ref_moi(feat, props, ph, pw, scale):
    c, hf, wf = feat.shape
    masks = props.masks()
    outs = []
    for p in range(len(props)):
        on = ref_cell_on(masks[p], hf, wf, scale, feat.dtype)
        outs.append(ref_pool(feat, props.boxes[p], on, ph, pw, scale))
    return torch.stack(outs)


CASES = [(1 / 4, (30, 37), (8, 10)), (1 / 2.5, (23, 29), (10, 12))]


@pytest.mark.parametrize("scale,hw,fhw", CASES)
def test_incidence_matches_dense_footprints(scale, hw, fhw):
    props = random_proposals(*hw, n_sp=15, n_prop=12, seed=1)
    inc = superpixel_cell_incidence(props.superpixels, props.num_superpixels, fhw, scale)
    on = cell_on(props, inc, 0, len(props), fhw[0] * fhw[1])
    masks = props.masks()
    for p in range(len(props)):
        ref = ref_cell_on(masks[p], *fhw, scale)
        assert torch.equal(on[p].view(fhw), ref), p


@pytest.mark.parametrize("scale,hw,fhw", CASES)
def test_forward_backward_match_reference_loop(scale, hw, fhw):
    torch.manual_seed(0)
    props = random_proposals(*hw, n_sp=14, n_prop=10, seed=2)
    feat = torch.randn(3, *fhw, dtype=torch.float64, requires_grad=True)
    out = moi_pool(feat, props, (3, 4), scale, compensation_mode="none")
    ref = _ref_moi(feat, props, 3, 4, scale)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    g = torch.randn_like(out)
    (ga,) = torch.autograd.grad(out, feat, g)
    (gr,) = torch.autograd.grad(ref, feat, g)
    torch.testing.assert_close(ga, gr, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["code", "paper", "none"])
def test_gradcheck_double(mode):
    props = random_proposals(20, 24, n_sp=8, n_prop=5, seed=3)
    # positive features: the paper's form divides by the pooled sum
    feat = (torch.rand(1, 2, 5, 6, dtype=torch.float64) + 0.5).requires_grad_(True)
    inc = superpixel_cell_incidence(props.superpixels, props.num_superpixels, (5, 6), 1 / 4)
    assert torch.autograd.gradcheck(
        lambda f: moi_pool(f, props, 2, 1 / 4, compensation_mode=mode, incidence=inc),
        (feat,),
        fast_mode=True,
    )


def _rectangles(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """``(n + 6, h, w)`` random rectangles, plus 1-pixel-wide/high ones and ones touching
    each border of the image and the whole image."""
    rng = np.random.default_rng(seed)
    spans = []
    for _ in range(n):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        spans.append((x0, y0, rng.integers(x0, w), rng.integers(y0, h)))  # inclusive
    x, y = rng.integers(0, w), rng.integers(0, h)
    spans += [(x, 3, x, h - 5), (2, y, w - 3, y), (0, 0, 0, 0), (w - 1, h - 1, w - 1, h - 1),
              (0, y, w - 1, h - 1), (0, 0, w - 1, h - 1)]
    masks = np.zeros((len(spans), h, w), bool)
    for k, (x0, y0, x1, y1) in enumerate(spans):
        masks[k, y0 : y1 + 1, x0 : x1 + 1] = True
    return masks


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stride", [8, 16])
@pytest.mark.parametrize("kernel", ["1", "0"])
def test_rectangles_equal_torchvision_roi_pool(dtype, stride, kernel, monkeypatch):
    """A rectangle segment pools as ``torchvision.ops.roi_pool`` pools its box (inclusive
    pixel indices), forward and backward, on the C kernel and on the torch path."""
    monkeypatch.setenv("JTSM_BINNEDMAX", kernel)
    h, w = 77, 101  # not multiples of the stride: the last cells are partial
    props = ProposalTensors.from_proposal_set(ProposalSet.from_masks(_rectangles(h, w, 40, 7)))
    hf, wf = -(-h // stride), -(-w // stride)
    g = torch.Generator().manual_seed(stride)
    feat = torch.randn(1, 6, hf, wf, generator=g, dtype=dtype, requires_grad=True)
    for size in (7, (3, 5)):
        out = moi_pool(feat, props, size, 1 / stride, compensation_mode="none",
                       use_scores=False)
        rois = [inclusive_boxes(props.boxes.to(dtype))]
        ref = torchvision.ops.roi_pool(feat, rois, size, 1 / stride)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        gout = torch.randn(out.shape, generator=g, dtype=dtype)
        (ga,) = torch.autograd.grad(out, feat, gout)
        (gr,) = torch.autograd.grad(ref, feat, gout)
        torch.testing.assert_close(ga, gr, rtol=0, atol=1e-6)
        assert ga.abs().sum() > 0


def test_rectangle_turns_on_exactly_its_box_cells():
    """Eq. 6 with pixel p in cell round(p / stride): a rectangle spanning pixels x0..x1 turns on
    cells round(x0 / s) .. round(x1 / s), clipped to the map (the cells RoIPool's box covers)."""
    h, w, stride = 50, 70, 8
    masks = _rectangles(h, w, 30, 3)
    props = ProposalTensors.from_proposal_set(ProposalSet.from_masks(masks))
    hf, wf = -(-h // stride), -(-w // stride)
    inc = superpixel_cell_incidence(props.superpixels, props.num_superpixels, (hf, wf),
                                    1 / stride)
    on = cell_on(props, inc, 0, len(props), hf * wf).view(-1, hf, wf)
    for k, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        r0, r1 = (min(int(np.floor(v / stride + 0.5)), hf - 1) for v in (ys.min(), ys.max()))
        c0, c1 = (min(int(np.floor(v / stride + 0.5)), wf - 1) for v in (xs.min(), xs.max()))
        expect = torch.zeros(hf, wf, dtype=torch.bool)
        expect[r0 : r1 + 1, c0 : c1 + 1] = True
        assert torch.equal(on[k], expect), k


def test_roi_pool_baseline_is_torchvision_on_inclusive_boxes():
    """jtsm.ops.roi_pool (the RoIPool row of Table 1) is torchvision's on the box's pixels."""
    from jtsm.ops.roi_pool import roi_pool

    props = ProposalTensors.from_proposal_set(ProposalSet.from_masks(_rectangles(64, 80, 10, 1)))
    feat = torch.randn(1, 4, 4, 5)
    ref = torchvision.ops.roi_pool(feat, [props.boxes - torch.tensor([0.0, 0, 1, 1])], 7, 1 / 16)
    assert torch.equal(roi_pool(feat, props.boxes, 7, 1 / 16), ref)
    assert torch.equal(moi_pool(feat, props, 7, 1 / 16, "none", False), ref)


def test_masked_out_cells_never_influence_output():
    torch.manual_seed(1)
    props = random_proposals(32, 40, n_sp=20, n_prop=8, seed=4)
    hf, wf = 8, 10
    feat = torch.randn(4, hf, wf)
    inc = superpixel_cell_incidence(props.superpixels, props.num_superpixels, (hf, wf), 1 / 4)
    on = cell_on(props, inc, 0, len(props), hf * wf)
    base = moi_pool(feat, props, 3, 1 / 4)
    for p in range(len(props)):
        off = ~on[p].view(hf, wf)
        assert off.any()
        pert = feat.clone()
        pert[:, off] = 1e6 * torch.rand(int(off.sum()))  # huge: would win every max
        out = moi_pool(pert, props, 3, 1 / 4)
        torch.testing.assert_close(out[p], base[p], rtol=0, atol=0)


def test_slicing_the_cell_list_does_not_change_result(monkeypatch):
    """The torch path gathers slices of the cell list within a byte budget; a bin split
    across slices gets the same max and gradient as in one slice."""
    monkeypatch.setenv("JTSM_BINNEDMAX", "0")
    props = random_proposals(30, 30, n_sp=12, n_prop=9, seed=5)
    feat = torch.randn(3, 8, 8, dtype=torch.float64, requires_grad=True)
    gout = torch.randn(9, 3, 7, 7, dtype=torch.float64)
    res = []
    for budget in (1 << 24, 60):  # 60 bytes: 1 cell per slice, 1 bin per backward chunk
        monkeypatch.setattr(bm, "_WORK_BYTES_CPU", budget)
        out = moi_pool(feat, props, 7, 1 / 4)
        res.append((out, torch.autograd.grad(out, feat, gout)[0]))
    assert torch.equal(res[0][0], res[1][0])
    assert torch.equal(res[0][1], res[1][1])


def test_plan_built_in_chunks_of_proposals_is_the_same(monkeypatch):
    """The torch plan builder expands at most _PLAN_ENTRIES bin cells at a time (a larger
    proposal alone); the plan does not depend on the chunking."""
    import importlib

    mp = importlib.import_module("jtsm.ops.moi_pool")  # the module, not the re-exported function
    props = random_proposals(36, 44, n_sp=25, n_prop=30, seed=8)
    hf, wf = 9, 11
    inc = superpixel_cell_incidence(props.superpixels, props.num_superpixels, (hf, wf), 1 / 4)
    bins = mp.moi_bins(props, 1 / 4, 7, 7, hf, wf)
    whole, ne_whole = mp._plan(props, inc, bins, wf, hf * wf)
    monkeypatch.setattr(mp, "_PLAN_ENTRIES", 60)  # below most proposals' 49+ cells: ~1 each
    parts, ne_parts = mp._plan(props, inc, bins, wf, hf * wf)
    assert torch.equal(whole.starts, parts.starts) and torch.equal(whole.cells, parts.cells)
    assert torch.equal(ne_whole, ne_parts) and whole.cells.numel() > 0
    assert mp._proposal_chunks([5, 70, 3, 3, 60, 1], 60) == [(0, 1), (1, 2), (2, 4), (4, 5),
                                                            (5, 6)]


def test_compensation_code_and_paper():
    pooled = torch.tensor([[[[1.0, 0.0], [3.0, 0.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])  # (2,1,2,2)
    nonempty = torch.tensor([2, 4])
    scores = torch.tensor([0.5, 0.0])
    code = compensation(pooled, nonempty, "code", scores)
    # psi = 4 / (nonempty + 1) * (score + 1)
    torch.testing.assert_close(code[0], pooled[0] * (4 / 3 * 1.5))
    torch.testing.assert_close(code[1], pooled[1] * (4 / 5))
    paper = compensation(pooled, nonempty, "paper")
    # Eq. 7 as printed: psi = ph*pw / sum(Phi^p)
    torch.testing.assert_close(paper[0], pooled[0] * (4 / 4.0))
    torch.testing.assert_close(paper[1], pooled[1] * (4 / 8.0))
    assert torch.equal(compensation(pooled, nonempty, "none"), pooled)
    with pytest.raises(ValueError):
        compensation(pooled, nonempty, "bogus")  # type: ignore[arg-type]


def test_code_compensation_counts_nonempty_bins():
    masks = np.zeros((1, 32, 32), bool)
    masks[0, 0:16, 0:32] = True  # top half of an 8x8 map at stride 4
    masks[0, 16:32, 0:4] = True  # plus a thin left strip: box is the full image
    props = ProposalTensors.from_proposal_set(ProposalSet.from_masks(masks))
    props.scores[:] = 0.0
    feat = torch.ones(1, 8, 8)
    out = moi_pool(feat, props, 4, 1 / 4, compensation_mode="code")
    # pixels 0..15 -> cell rows 0..4 (15/4 rounds to 4), the strip's columns 0..3 -> cells
    # 0..1; the box [0, 31] -> cells 0..8 (9 cells clipped to 8) in bins [0,3) [2,5) [4,7)
    # [6,8): the first three bin-rows meet on-rows, the last only in column-bin 0
    assert torch.allclose(out[0, 0], torch.tensor(
        [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.float32
    ) * 16 / 14)


def test_empty_membership_rows_pool_to_zero():
    spm = np.zeros((16, 16), np.int32)
    spm[8:] = 1
    ps = ProposalSet(spm, sp.csr_matrix(np.array([[True, False], [False, True], [False, False]])))
    props = ProposalTensors.from_proposal_set(ps)
    feat = torch.randn(2, 4, 4)
    out = moi_pool(feat, props, 2, 1 / 4, compensation_mode="none")
    # box pixels rows 0..7, columns 0..15 -> cells rows 0..2, columns 0..4 (clipped to 3):
    # bin (0, 0) is rows [0, 2), columns [0, 3); proposal 2 has no superpixel: all zeros
    torch.testing.assert_close(out[0, :, 0, 0], feat[:, 0:2, 0:3].amax((1, 2)))
    assert out[1].abs().sum() > 0 and torch.equal(out[2], torch.zeros_like(out[2]))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    stride=st.sampled_from([2.0, 3.0, 4.0, 2.5, 8.0]),
    ph=st.integers(1, 5),
    pw=st.integers(1, 5),
)
def test_property_random_segments_match_reference(seed, stride, ph, pw):
    h, w = 24 + seed % 9, 20 + seed % 13
    props = random_proposals(h, w, n_sp=10, n_prop=6, seed=seed)
    hf, wf = int(np.ceil(h / stride)), int(np.ceil(w / stride))
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(2, hf, wf, dtype=torch.float64, generator=g, requires_grad=True)
    out = moi_pool(feat, props, (ph, pw), 1 / stride, compensation_mode="none")
    ref = _ref_moi(feat, props, ph, pw, 1 / stride)
    assert torch.equal(out, ref)
    gout = torch.randn(out.shape, dtype=torch.float64, generator=g)
    (ga,) = torch.autograd.grad(out, feat, gout)
    (gr,) = torch.autograd.grad(ref, feat, gout)
    torch.testing.assert_close(ga, gr, rtol=0, atol=1e-12)


def test_ties_route_gradient_to_first_cell_in_row_major_order():
    masks = np.zeros((1, 16, 16), bool)
    masks[0] = True
    props = ProposalTensors.from_proposal_set(ProposalSet.from_masks(masks))
    feat = torch.zeros(1, 4, 4, requires_grad=True)  # all equal: every cell ties
    out = moi_pool(feat, props, 2, 1 / 4, compensation_mode="none")
    out.sum().backward()
    expect = torch.zeros(4, 4)
    expect[0, 0] = expect[0, 2] = expect[2, 0] = expect[2, 2] = 1.0  # each bin's first cell
    assert torch.equal(feat.grad[0], expect)


def test_nothing_output_sized_is_saved_for_backward():
    """Memory stays flat: autograd keeps the feature table, the plan (cell ids, no channels)
    and one factor per bin, never the (P, C, ph, pw) output: what it keeps beyond the table
    does not grow with the channels."""
    props = random_proposals(40, 40, n_sp=30, n_prop=60, seed=6)
    extra = []
    for c in (64, 128):
        feat = torch.randn(1, c, 10, 10, requires_grad=True)
        saved: list[int] = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = moi_pool(feat, props, 7, 1 / 4, compensation_mode="code")
        extra.append(sum(saved) - feat.numel())
        assert sum(saved) < out.numel() / 4
    assert extra[0] == extra[1]


def test_negative_scores_never_flip_features():
    pooled = torch.ones(2, 1, 2, 2)
    out = compensation(pooled, torch.tensor([4, 4]), "code", torch.tensor([-3.0, 0.0]))
    torch.testing.assert_close(out[0], out[1])


@pytest.mark.parametrize("seed, n_sp", [(0, 15), (1, 60), (2, 200)])
def test_cpu_incidence_equals_unique_over_every_pixel(seed, n_sp):
    """The CPU path sends only the pixels whose key differs from the left and upper
    neighbours' to ``unique``; the incidence is the same as over every pixel."""
    props = random_proposals(47, 61, n_sp=n_sp, n_prop=5, seed=seed)
    for scale, fhw in ((1 / 4, (12, 16)), (1 / 8, (6, 8)), (1.0, (47, 61))):
        crow, cells = superpixel_cell_incidence(props.superpixels, n_sp, fhw, scale)
        ci, cj = pixel_cells(47, fhw[0], scale), pixel_cells(61, fhw[1], scale)
        n_cells = fhw[0] * fhw[1]
        keys = torch.unique(props.superpixels * n_cells + ci[:, None] * fhw[1] + cj[None, :])
        counts = torch.bincount(keys // n_cells, minlength=n_sp)
        assert torch.equal(cells, keys % n_cells)
        assert torch.equal(crow, torch.cat([torch.zeros(1, dtype=torch.int64),
                                            counts.cumsum(0)]))


def test_inclusive_boxes_subtract_one_from_the_far_edges_exactly():
    b = torch.tensor([[0.0, -0.0, 1.0, 2.5], [3.25, 4.0, 1e7, -1.0]])
    for dt in (torch.float32, torch.float64):
        x = b.to(dt)
        assert torch.equal(inclusive_boxes(x), x - torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=dt))
    assert inclusive_boxes(torch.zeros(0, 4)).shape == (0, 4)


def test_host_proposals_are_planned_on_the_host_with_no_host_sync():
    """MoIPool of host proposals counts no host synchronisation in a simulated GPU step (the
    plan is host work; its tensors then go to the features' device)."""
    from jtsm.ops.sync_counter import HostSyncCounter

    for n_prop in (20, 400):
        props = random_proposals(90, 120, n_sp=60, n_prop=n_prop, seed=6)
        feat = torch.randn(1, 16, 12, 15, requires_grad=True)
        with HostSyncCounter() as c:
            moi_pool(feat, props, 7, 1 / 8).sum().backward()
        assert c.count == 0, c.summary()
