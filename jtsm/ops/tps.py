"""Shape-interpolation MoIPool: warp the segment onto its box with a thin-plate spline (TPS).

Construction (the paper gives only the idea, Sec. 3.3; the authors' code has no TPS):

1. **Contour.** The proposal's mask is cut from the superpixel map inside its box; its largest
   outer contour (``cv2.findContours``, pixel centres at ``+0.5``) is oriented clockwise on
   screen (top edge left-to-right) and resampled to ``K`` points at equal arc length,
   starting from the contour point nearest the box's top-left corner.
2. **Correspondence.** Contour point ``i`` is paired with the point at arc-length fraction
   ``i / K`` of the box perimeter (inset by half a pixel, as contour points are pixel
   centres), walked the same way from the top-left corner. The segment's
   centroid is paired with the box centre. So the boundary maps monotonically onto the
   boundary, and the warp never needs an inverse.
3. **TPS.** A 2-D TPS ``f: box -> image`` (kernel ``U(r) = r^2 log r^2``, affine part, ridge
   ``lambda`` for duplicate points) is fitted in box-normalised coordinates with
   ``torch.linalg.solve``, batched over proposals.
4. **Pooling.** RoIAlign's sample grid over the box (``sampling_ratio`` per bin and axis,
   ``aligned`` half-cell shift) is pushed through ``f`` and the features are sampled
   bilinearly there (``F.grid_sample`` with RoIAlign's border rule: a point more than one
   cell outside the map reads 0, one nearer reads the border) and averaged per bin. A
   rectangle segment gives the identity warp, i.e. ``torchvision.ops.roi_align``. Gradients
   w.r.t. features come from autograd (the warp is fixed data).

A segment with several components is warped by its largest one; a segment whose contour has
fewer than 3 points, or whose box is under 2 pixels on a side, uses the identity warp. A
strongly non-convex segment (an L) cannot be unfolded by a smooth warp of its box: part of the
sample grid then still falls outside it (the tests measure how much).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jtsm.ops.proposal_tensors import ProposalTensors

__all__ = ["fit_tps", "tps_transform", "box_perimeter_points", "contour_control_points",
           "tps_control_points",
           "moi_tps_pool", "sample_bilinear"]


def _u(d2: Tensor) -> Tensor:
    """TPS kernel ``U = r^2 log r^2`` from squared distances (0 at r = 0)."""
    return torch.where(d2 > 0, d2 * torch.log(d2.clamp(min=1e-300)), torch.zeros_like(d2))


def fit_tps(src: Tensor, dst: Tensor, reg: float = 1e-3) -> Tensor:
    """Fit ``f`` with ``f(src_i) ~= dst_i``: ``(B, K, 2)`` each -> parameters ``(B, K + 3, 2)``."""
    b, k, _ = src.shape
    kmat = _u(((src[:, :, None] - src[:, None]) ** 2).sum(-1))
    kmat = kmat + reg * torch.eye(k, dtype=src.dtype, device=src.device)
    pmat = torch.cat([torch.ones(b, k, 1, dtype=src.dtype, device=src.device), src], 2)
    top = torch.cat([kmat, pmat], 2)
    bot = torch.cat([pmat.transpose(1, 2), src.new_zeros(b, 3, 3)], 2)
    lhs = torch.cat([top, bot], 1)
    rhs = torch.cat([dst, dst.new_zeros(b, 3, 2)], 1)
    return torch.linalg.solve(lhs, rhs)


def tps_transform(params: Tensor, src: Tensor, points: Tensor) -> Tensor:
    """Apply a fitted TPS: ``points`` ``(B, N, 2)`` -> ``(B, N, 2)``."""
    k = src.shape[1]
    u = _u(((points[:, :, None] - src[:, None]) ** 2).sum(-1))  # (B, N, K)
    aff = params[:, k:]  # (B, 3, 2)
    return u @ params[:, :k] + aff[:, :1] + points @ aff[:, 1:]


def box_perimeter_points(k: int, width: float = 1.0, height: float = 1.0) -> np.ndarray:
    """``(k, 2)`` (x, y) points of the unit square's perimeter, clockwise on screen from the
    top-left corner, at equal arc length *in the metric of a width x height box* (so they
    pair with contour points resampled at equal pixel arc length)."""
    w, h = max(width, 1e-6), max(height, 1e-6)
    t = np.arange(k) / k * 2 * (w + h)
    x = np.select([t < w, t < w + h, t < 2 * w + h], [t / w, 1.0, 1.0 - (t - w - h) / w], 0.0)
    y = np.select([t < w, t < w + h, t < 2 * w + h], [0.0, (t - w) / h, 1.0],
                  1.0 - (t - 2 * w - h) / h)
    return np.stack([x, y], 1)


def contour_control_points(mask: np.ndarray, k: int) -> np.ndarray | None:
    """``k`` contour points ``(k, 2)`` (x, y, pixel units, origin at the crop's corner) plus the
    centroid as row ``k``; None when the mask has no usable contour."""
    mask = mask.astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float64) + 0.5
    if len(c) < 3:
        return None
    area2 = np.sum(c[:, 0] * np.roll(c[:, 1], -1) - np.roll(c[:, 0], -1) * c[:, 1])
    if area2 < 0:  # make it clockwise on screen (y down): positive shoelace sum
        c = c[::-1]
    start = int(np.argmin(c[:, 0] ** 2 + c[:, 1] ** 2))
    c = np.roll(c, -start, 0)
    closed = np.vstack([c, c[:1]])
    seg = np.sqrt((np.diff(closed, axis=0) ** 2).sum(1))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(k) / k * cum[-1]
    pts = np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], 1)
    mo = cv2.moments(mask, binaryImage=True)
    centroid = np.array([[mo["m10"] / mo["m00"] + 0.5, mo["m01"] / mo["m00"] + 0.5]])
    return np.vstack([pts, centroid])


def tps_control_points(
    proposals: ProposalTensors, start: int = 0, stop: int | None = None, k: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Control points of proposals ``start .. stop-1``: unit-box ``(n, k + 1, 2)`` (source)
    and image-space ``(n, k + 1, 2)`` (destination)."""
    stop = len(proposals) if stop is None else stop
    spm = proposals.superpixels.cpu().numpy()
    crow = proposals.crow.cpu().numpy()
    col = proposals.col.cpu().numpy()
    boxes = proposals.boxes.cpu().numpy().astype(np.float64)
    src = np.zeros((stop - start, k + 1, 2))
    out = np.zeros((stop - start, k + 1, 2))
    lut = np.zeros(proposals.num_superpixels, bool)
    for i in range(start, stop):
        x0, y0, x1, y1 = boxes[i]
        wh = np.array([max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)])
        ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
        ix1, iy1 = int(np.ceil(x1)), int(np.ceil(y1))
        members = col[crow[i] : crow[i + 1]]
        lut[members] = True
        crop = lut[spm[iy0:iy1, ix0:ix1]]
        lut[members] = False
        # a box under 2 px on a side has collinear control points: identity warp
        pts = contour_control_points(crop, k) if min(wh) >= 2 and crop.size else None
        # contour points sit on pixel centres: pair them with the box inset by half a pixel
        inner = np.maximum(wh - 1.0, 1e-6)
        unit = box_perimeter_points(k, *inner) * (inner / wh) + 0.5 / np.maximum(wh, 1.0)
        unit = np.vstack([unit, [[0.5, 0.5]]])
        src[i - start] = unit
        out[i - start] = unit * wh + [x0, y0] if pts is None else pts + [ix0, iy0]
    return src, out


def sample_bilinear(features: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Bilinear samples of ``(C, h, w)`` features at cell positions ``x, y`` ``(n, m)`` (cell
    ``i``'s value sits at ``i``), with RoIAlign's border rule: a point beyond ``[-1, size]``
    on either axis reads 0, one within reads the clamped position. Returns ``(n, m, C)``."""
    c, h, w = features.shape
    inside = (y >= -1.0) & (y <= h) & (x >= -1.0) & (x <= w)
    # align_corners=False: normalised -1 / +1 are the outer edges of the first / last cell
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], -1)
    out = F.grid_sample(features[None], grid[None].to(features.dtype), mode="bilinear",
                        padding_mode="border", align_corners=False)[0]  # (C, n, m)
    return (out * inside.to(out.dtype)).permute(1, 2, 0)


def moi_tps_pool(
    features: Tensor,
    proposals: ProposalTensors,
    output_size: int | tuple[int, int] = 7,
    spatial_scale: float = 1.0 / 16,
    sampling_ratio: int = 2,
    aligned: bool = True,
    num_control: int = 16,
    reg: float = 1e-3,
    chunk: int = 256,
    control: tuple[np.ndarray, np.ndarray] | None = None,
) -> Tensor:
    """Shape-interpolation MoIPool (see the module docstring).

    Arguments:
        features: ``(1, C, h_f, w_f)`` or ``(C, h_f, w_f)``.
        proposals: the image's proposals (superpixel map at image size).
        num_control: contour control points ``K`` (plus the centroid).
        control: precomputed :func:`tps_control_points` of all proposals (they depend on the
            proposals only, so a data loader can compute them once); computed when None.
    Returns:
        ``(P, C, ph, pw)``.
    """
    if features.dim() == 4:
        features = features[0]
    c, hf, wf = features.shape
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    p = len(proposals)
    dev = features.device
    g = sampling_ratio
    # sample grid in the unit box: (ph * g) x (pw * g) points, bin-major
    ty = (torch.arange(ph * g, dtype=torch.float64, device=dev) + 0.5) / (ph * g)
    tx = (torch.arange(pw * g, dtype=torch.float64, device=dev) + 0.5) / (pw * g)
    grid = torch.stack(torch.meshgrid(tx, ty, indexing="xy"), -1).reshape(-1, 2)  # (N, 2) x,y
    # chunks are concatenated once: assigning into slices of one output would make autograd
    # copy the whole gradient once per chunk (CopySlices)
    outs: list[Tensor] = []
    off = 0.5 if aligned else 0.0
    for a in range(0, p, chunk):
        b = min(a + chunk, p)
        n = b - a
        if control is None:
            src_np, dst_np = tps_control_points(proposals, a, b, num_control)
        else:
            src_np, dst_np = control[0][a:b], control[1][a:b]
        src, ctrl = torch.from_numpy(src_np).to(dev), torch.from_numpy(dst_np).to(dev)
        bx = proposals.boxes[a:b].to(dev, torch.float64)
        wh = (bx[:, 2:] - bx[:, :2]).clamp(min=1e-6)
        dst = (ctrl - bx[:, None, :2]) / wh[:, None]  # box-normalised image positions
        params = fit_tps(src, dst, reg)
        pts = tps_transform(params, src, grid.expand(n, -1, -1))
        pts = pts * wh[:, None] + bx[:, None, :2]  # image pixels
        xf = pts[..., 0] * spatial_scale - off
        yf = pts[..., 1] * spatial_scale - off
        vals = sample_bilinear(features, xf, yf)  # (n, N, C)
        # average the g x g samples of each bin: (n, ph, g, pw, g, C) -> (n, ph, pw, C)
        outs.append(vals.view(n, ph, g, pw, g, c).mean((2, 4)))
    # no proposals: an empty slice of the features, so the graph still reaches them
    out = torch.cat(outs) if outs else features.reshape(c, -1).T[:0].reshape(0, ph, pw, c)
    return out.permute(0, 3, 1, 2)
