"""jtsm's RoIPool / RoIAlign (torchvision's ops on jtsm's boxes) against slow loops: the box
conventions (exclusive right edge; RoIPool's inclusive pixel indices) and the batch index."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from ops_helpers import ref_pool

from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool


def _boxes(n: int, h: float, w: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, generator=g) * w * 0.8
    y0 = torch.rand(n, generator=g) * h * 0.8
    x1 = x0 + 1 + torch.rand(n, generator=g) * w * 0.7
    y1 = y0 + 1 + torch.rand(n, generator=g) * h * 0.7
    return torch.stack([x0, y0, x1, y1], 1).double()


def _bilinear(f, y, x):
    c, h, w = f.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return f.new_zeros(c)
    y, x = max(y, 0.0), max(x, 0.0)
    yl, xl = int(math.floor(y)), int(math.floor(x))
    if yl >= h - 1:
        yh = yl = h - 1
        y = float(yl)
    else:
        yh = yl + 1
    if xl >= w - 1:
        xh = xl = w - 1
        x = float(xl)
    else:
        xh = xl + 1
    ly, lx = y - yl, x - xl
    hy, hx = 1 - ly, 1 - lx
    return hy * hx * f[:, yl, xl] + hy * lx * f[:, yl, xh] + ly * hx * f[:, yh, xl] + ly * lx * f[
        :, yh, xh
    ]


def _ref_align(f, box, ph, pw, scale, sr, aligned):
    off = 0.5 if aligned else 0.0
    x0, y0 = box[0] * scale - off, box[1] * scale - off
    rw, rh = box[2] * scale - off - x0, box[3] * scale - off - y0
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / ph, rw / pw
    gh = sr if sr > 0 else math.ceil(rh / ph)
    gw = sr if sr > 0 else math.ceil(rw / pw)
    out = f.new_zeros(f.shape[0], ph, pw)
    for u in range(ph):
        for v in range(pw):
            acc = f.new_zeros(f.shape[0])
            for iy in range(gh):
                y = y0 + u * bh + (iy + 0.5) * bh / gh
                for ix in range(gw):
                    x = x0 + v * bw + (ix + 0.5) * bw / gw
                    acc = acc + _bilinear(f, float(y), float(x))
            out[:, u, v] = acc / max(gh * gw, 1)
    return out


def test_roi_pool_matches_loop_with_batch_index():
    torch.manual_seed(0)
    feat = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    boxes = _boxes(8, 72, 88, 1)
    bidx = torch.tensor([0, 1] * 4, dtype=torch.float64)
    out = roi_pool(feat, torch.cat([bidx[:, None], boxes], 1), (3, 4), 1 / 8)
    for k in range(8):
        ref = ref_pool(feat[int(bidx[k])], boxes[k], None, 3, 4, 1 / 8)
        assert torch.equal(out[k], ref)


def test_roi_pool_gradcheck():
    feat = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    boxes = _boxes(4, 48, 56, 2)
    assert torch.autograd.gradcheck(lambda f: roi_pool(f, boxes, 2, 1 / 8), (feat,))


def test_roi_pool_box_outside_map_is_zero():
    feat = torch.randn(1, 2, 4, 4)
    out = roi_pool(feat, torch.tensor([[100.0, 100.0, 140.0, 140.0]]), 2, 1 / 4)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sr", [2, 0])
def test_roi_align_matches_loop(aligned, sr):
    torch.manual_seed(3)
    feat = torch.randn(1, 3, 7, 9, dtype=torch.float64)
    boxes = _boxes(6, 56, 72, 4)
    boxes[0] = torch.tensor([-10.0, -6.0, 90.0, 70.0])  # partly outside the map
    out = roi_align(feat, boxes, (3, 2), 1 / 8, sr, aligned)
    for k in range(6):
        ref = _ref_align(feat[0], boxes[k].tolist(), 3, 2, 1 / 8, sr, aligned)
        torch.testing.assert_close(out[k], ref, rtol=1e-12, atol=1e-12)


def test_roi_align_gradcheck():
    feat = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    boxes = torch.cat([torch.tensor([[0.0], [1.0], [1.0]]), _boxes(3, 40, 48, 5)], 1)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, 2, 1 / 8, 0, True), (feat,))


def test_box_iou_is_torchvision_with_zero_for_empty_boxes():
    from jtsm.ops.boxes import box_iou

    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    out = box_iou(a, b)
    assert torch.equal(out, torch.tensor([[50 / 150, 0.0], [0.0, 0.0]]))
    assert torchvision.ops.box_iou(a, b)[1, 1].isnan()  # what the wrapper turns into 0
