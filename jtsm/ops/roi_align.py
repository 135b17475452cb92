"""RoIAlign in pure torch (baseline of paper Table 1; 14x14 features of the mask head).

Semantics follow Mask R-CNN / torchvision's ``roi_align``: continuous box coordinates (our
exclusive right edge *is* the continuous right edge), ``aligned=True`` shifts by half a cell,
``sampling_ratio`` samples per bin and axis (adaptive ``ceil(roi_size / bins)`` when ``<= 0``),
bilinear interpolation with the same border rules, average over samples.

Every output is a weighted sum of feature cells, so it is computed as
``F.embedding_bag(mode="sum", per_sample_weights=...)`` over the ``(N*h*w, C)`` feature table:
one bag per output bin, four entries per sample point. Gradients come from autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from jtsm.ops.roi_pool import split_boxes

__all__ = ["roi_align", "bilinear_entries", "pool_points"]


def bilinear_entries(y: Tensor, x: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Bilinear interpolation as 4 (cell, weight) entries per point, torchvision's border rules.

    Arguments:
        y, x: same-shape float tensors of sample positions in feature cells (cell centres at
            integer + 0, i.e. the value of cell ``i`` sits at ``i``).
    Returns:
        ``index`` ``(*shape, 4)`` int64 cell ids ``row * width + col`` and ``weight``
        ``(*shape, 4)``; a point outside ``[-1, size]`` gets weight 0.
    """
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y0 = torch.floor(y).long()
    x0 = torch.floor(x).long()
    ytop = y0 >= height - 1
    xtop = x0 >= width - 1
    y0 = torch.where(ytop, height - 1, y0)
    x0 = torch.where(xtop, width - 1, x0)
    y1 = torch.where(ytop, y0, y0 + 1)
    x1 = torch.where(xtop, x0, x0 + 1)
    ly = torch.where(ytop, torch.zeros_like(y), y - y0)
    lx = torch.where(xtop, torch.zeros_like(x), x - x0)
    hy, hx = 1 - ly, 1 - lx
    index = torch.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1], -1)
    weight = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], -1)
    weight = weight.masked_fill(outside.unsqueeze(-1), 0.0)
    return index, weight


def pool_points(table: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Weighted sums of table rows: ``(B, E)`` index/weight -> ``(B, C)``."""
    b, e = index.shape
    offsets = torch.arange(b, device=index.device) * e
    return F.embedding_bag(
        index.reshape(-1), table, offsets, mode="sum", per_sample_weights=weight.reshape(-1)
    )


def roi_align(
    features: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int] = 7,
    spatial_scale: float = 1.0 / 16,
    sampling_ratio: int = 2,
    aligned: bool = True,
    chunk: int = 256,
) -> Tensor:
    """RoIAlign.

    Arguments:
        features: ``(N, C, h_f, w_f)``.
        boxes: ``(K, 4)`` boxes of image 0 or ``(K, 5)`` with the batch index first (pixels).
        sampling_ratio: samples per bin and axis; ``<= 0`` for adaptive.
        aligned: shift the box by -0.5 cell (pixel-exact, detectron2's ROIAlignV2).
    Returns:
        ``(K, C, ph, pw)``.
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, hf, wf = features.shape
    boxes = split_boxes(boxes, n)
    k = boxes.shape[0]
    table = features.permute(0, 2, 3, 1).reshape(n * hf * wf, c)
    dt = features.dtype
    off = 0.5 if aligned else 0.0
    # chunks are concatenated once: assigning into slices of one output would make autograd
    # copy the whole gradient once per chunk (CopySlices)
    outs: list[Tensor] = []
    for a in range(0, k, chunk):
        bx = boxes[a : a + chunk].to(dt)
        m = bx.shape[0]
        x0 = bx[:, 1] * spatial_scale - off
        y0 = bx[:, 2] * spatial_scale - off
        rw = bx[:, 3] * spatial_scale - off - x0
        rh = bx[:, 4] * spatial_scale - off - y0
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        bw, bh = rw / pw, rh / ph
        if sampling_ratio > 0:
            gh = torch.full((m,), sampling_ratio, device=bx.device)
            gw = gh.clone()
        else:
            gh = torch.ceil(rh / ph).long().clamp(min=1)
            gw = torch.ceil(rw / pw).long().clamp(min=1)
        mh, mw = int(gh.max()), int(gw.max())
        iy = torch.arange(mh, device=bx.device, dtype=dt)
        ix = torch.arange(mw, device=bx.device, dtype=dt)
        u = torch.arange(ph, device=bx.device, dtype=dt)
        v = torch.arange(pw, device=bx.device, dtype=dt)
        # sample positions (m, ph, mh) and (m, pw, mw)
        ys = y0[:, None, None] + u[None, :, None] * bh[:, None, None] + (iy + 0.5)[
            None, None, :
        ] * (bh / gh)[:, None, None]
        xs = x0[:, None, None] + v[None, :, None] * bw[:, None, None] + (ix + 0.5)[
            None, None, :
        ] * (bw / gw)[:, None, None]
        vy = (iy[None, :] < gh[:, None]).to(dt)  # (m, mh) padded samples weigh 0
        vx = (ix[None, :] < gw[:, None]).to(dt)
        yy = ys[:, :, None, :, None].expand(m, ph, pw, mh, mw)
        xx = xs[:, None, :, None, :].expand(m, ph, pw, mh, mw)
        index, weight = bilinear_entries(yy, xx, hf, wf)
        valid = vy[:, None, None, :, None] * vx[:, None, None, None, :]
        count = (gh * gw).to(dt).clamp(min=1)
        weight = weight * (valid / count[:, None, None, None, None]).unsqueeze(-1)
        index = index + (bx[:, 0].long() * hf * wf)[:, None, None, None, None, None]
        pooled = pool_points(table, index.reshape(m * ph * pw, -1), weight.reshape(m * ph * pw, -1))
        outs.append(pooled.view(m, ph, pw, c))
    out = torch.cat(outs) if outs else table[:0].reshape(0, ph, pw, c)
    return out.permute(0, 3, 1, 2)
