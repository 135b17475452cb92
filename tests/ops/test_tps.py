"""Thin-plate-spline shape-interpolation MoIPool."""

from __future__ import annotations

import numpy as np
import torch

from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.roi_align import roi_align
from jtsm.ops.tps import (
    contour_control_points,
    fit_tps,
    moi_tps_pool,
    tps_control_points,
    tps_transform,
)
from jtsm.structures import ProposalSet


def test_tps_interpolates_and_reproduces_affine_maps():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 9, 2, generator=g, dtype=torch.float64)
    dst = torch.rand(2, 9, 2, generator=g, dtype=torch.float64)
    params = fit_tps(src, dst, reg=0.0)
    torch.testing.assert_close(tps_transform(params, src, src), dst)
    a = torch.tensor([[1.5, 0.2], [-0.3, 0.8]], dtype=torch.float64)
    aff = src @ a + torch.tensor([0.1, -0.4], dtype=torch.float64)
    params = fit_tps(src, aff, reg=0.0)
    pts = torch.rand(2, 20, 2, generator=g, dtype=torch.float64)
    expect = pts @ a + aff[:, :1] - src[:, :1] @ a
    torch.testing.assert_close(tps_transform(params, src, pts), expect)


def test_contour_points_clockwise_from_top_left():
    m = np.zeros((20, 30), bool)
    m[2:18, 5:25] = True
    pts = contour_control_points(m, 8)
    assert pts.shape == (9, 2)
    np.testing.assert_allclose(pts[0], [5.5, 2.5])  # top-left pixel centre
    assert pts[1, 1] == 2.5 and pts[1, 0] > pts[0, 0]  # then along the top edge, rightwards
    np.testing.assert_allclose(pts[8], [15.0, 10.0])  # centroid


def _props(masks: np.ndarray) -> ProposalTensors:
    return ProposalTensors.from_proposal_set(ProposalSet.from_masks(masks))


def test_rectangle_segment_equals_roi_align():
    m = np.zeros((3, 64, 80), bool)
    m[0, 8:40, 16:72] = True
    m[1, :, :] = True
    m[2, 30:31, 3:50] = True  # one pixel high: degenerate contour -> identity warp
    props = _props(m)
    feat = torch.randn(1, 4, 8, 10, dtype=torch.float64)
    out = moi_tps_pool(feat, props, 7, 1 / 8, sampling_ratio=2, aligned=True)
    ref = roi_align(feat, props.boxes.double(), 7, 1 / 8, 2, True)
    torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-7)


def test_warp_puts_samples_inside_a_non_rectangular_segment():
    h, w = 80, 80
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.stack([((yy - 40) / 35) ** 2 + ((xx - 40) / 25) ** 2 < 1,  # ellipse
                      (yy >= 10) & (xx >= 10) & ((yy < 30) | (xx < 30)) & (yy < 70) & (xx < 70)])
    props = _props(masks)
    src, dst = tps_control_points(props, 0, 2, 24)
    inside_tps, inside_box = [], []
    for i in range(2):
        s, d = torch.from_numpy(src[i : i + 1]), torch.from_numpy(dst[i : i + 1])
        t = (torch.arange(14, dtype=torch.float64) + 0.5) / 14
        grid = torch.stack(torch.meshgrid(t, t, indexing="xy"), -1).reshape(1, -1, 2)
        x0, y0, x1, y1 = props.boxes[i].double()
        wh = torch.stack([x1 - x0, y1 - y0])
        # control points are box-normalised in moi_tps_pool; redo that here
        params = fit_tps(s, (d - torch.stack([x0, y0])) / wh, reg=1e-3)
        pts = tps_transform(params, s, grid)[0] * wh + torch.stack([x0, y0])
        box_pts = grid[0] * wh + torch.stack([x0, y0])
        for pts_, acc in ((pts, inside_tps), (box_pts, inside_box)):
            c = pts_.floor().long()
            ok = (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h)
            c = c[ok]
            acc.append(float(masks[i][c[:, 1].numpy(), c[:, 0].numpy()].sum()) / len(pts_))
    # ellipse: the warp puts (nearly) every sample inside; the L is only partly unfolded
    assert inside_tps[0] > 0.95 and inside_box[0] < 0.85, inside_tps
    assert inside_tps[1] > inside_box[1] + 0.05, (inside_tps, inside_box)


def test_gradcheck_features():
    m = np.zeros((2, 32, 32), bool)
    yy, xx = np.mgrid[0:32, 0:32]
    m[0] = (yy - 16) ** 2 + (xx - 14) ** 2 < 100
    m[1, 4:20, 6:30] = True
    props = _props(m)
    feat = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: moi_tps_pool(f, props, 2, 1 / 8), (feat,))


def test_precomputed_control_points_give_the_same_result():
    m = np.zeros((3, 40, 40), bool)
    yy, xx = np.mgrid[0:40, 0:40]
    m[0] = (yy - 20) ** 2 + (xx - 18) ** 2 < 150
    m[1, 5:30, 8:36] = True
    m[2] = (yy > xx) & (yy < 35)
    props = _props(m)
    feat = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    ctrl = tps_control_points(props, k=12)
    a = moi_tps_pool(feat, props, 3, 1 / 8, num_control=12, chunk=2)
    b = moi_tps_pool(feat, props, 3, 1 / 8, num_control=12, control=ctrl)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
