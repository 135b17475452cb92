"""Shape-invariant MoIPool (paper Sec. 3.3, Eq. 5-8).

For each proposal, a feature cell is *on* when some pixel of its footprint belongs to the
segment (Eq. 6); the footprint of cell ``i`` is image rows ``[floor(i*s), ceil((i+1)*s))``
(columns alike), ``s = 1 / spatial_scale``. RoIPool's bins over the proposal's rounded box then
take the max over on-cells only (Eq. 5); an empty bin gives 0. The pooled map is scaled by a
compensation term (Eq. 7-8), see :func:`compensation`.

Nothing here builds dense ``proposal x H x W`` masks. Per image, the sparse superpixel x cell
incidence (which cells each superpixel's pixels fall in) is computed once; per chunk of
proposals the cell-on map is ``membership @ incidence > 0`` as a ``(chunk, h_f * w_f)`` bool
matrix, so memory stays flat in the number of proposals. Gradients are exact (argmax routing,
:mod:`jtsm.ops.binned_max`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from jtsm.ops import binned_max as _bm
from jtsm.ops.binned_max import BinPlan, binned_max, rect_bin_cells
from jtsm.ops.boxes import bin_ranges, cell_boxes
from jtsm.ops.proposal_tensors import ProposalTensors

__all__ = [
    "footprints",
    "superpixel_cell_incidence",
    "cell_on",
    "moi_pool",
    "compensation",
    "compensation_factor",
    "Compensation",
]

Compensation = Literal["code", "paper", "none"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def footprints(n_cells: int, stride: float, limit: int, device=None) -> tuple[Tensor, Tensor]:
    """Image extent of each feature cell along one axis (Eq. 6).

    Returns:
        ``lo, hi`` ``(n_cells,)`` int64: cell ``i`` covers ``[floor(i*s), ceil((i+1)*s))``,
        clipped to ``[0, limit)``.
    """
    i = torch.arange(n_cells, dtype=torch.float64, device=device)
    lo = torch.floor(i * stride).long().clamp(0, limit)
    hi = torch.ceil((i + 1) * stride).long().clamp(0, limit)
    return lo, hi


def _axis_pairs(n_cells: int, stride: float, limit: int, device) -> tuple[Tensor, Tensor]:
    """All (pixel, cell) pairs along one axis where the pixel lies in the cell's footprint."""
    lo, hi = footprints(n_cells, stride, limit, device)
    counts = (hi - lo).clamp(min=0)
    cell = torch.repeat_interleave(torch.arange(n_cells, device=device), counts)
    offs = torch.arange(cell.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[cell]
    return lo[cell] + offs, cell


def superpixel_cell_incidence(
    superpixels: Tensor, num_superpixels: int, feat_size: tuple[int, int], spatial_scale: float
) -> tuple[Tensor, Tensor]:
    """Sparse superpixel x cell incidence: which feature cells each superpixel touches.

    Arguments:
        superpixels: ``(H, W)`` int64 superpixel map.
        feat_size: ``(h_f, w_f)``.
    Returns:
        CSR ``(crow (S + 1,), cells (nnz,))``: superpixel ``k`` touches cells
        ``cells[crow[k]:crow[k+1]]`` (cell id ``row * w_f + col``).
    """
    h, w = superpixels.shape
    hf, wf = feat_size
    s = 1.0 / spatial_scale
    dev = superpixels.device
    ys, ci = _axis_pairs(hf, s, h, dev)
    xs, cj = _axis_pairs(wf, s, w, dev)
    n_cells = hf * wf
    keys = superpixels[ys][:, xs] * n_cells + (ci[:, None] * wf + cj[None, :])
    keys = torch.unique(keys.reshape(-1))
    sp = torch.div(keys, n_cells, rounding_mode="floor")
    crow = torch.zeros(num_superpixels + 1, dtype=torch.int64, device=dev)
    crow[1:] = torch.cumsum(torch.bincount(sp, minlength=num_superpixels), 0)
    return crow, keys % n_cells


def cell_on(
    proposals: ProposalTensors,
    incidence: tuple[Tensor, Tensor],
    start: int,
    stop: int,
    n_cells: int,
) -> Tensor:
    """Cell-on map of proposals ``start .. stop-1`` (Eq. 6): ``(n, n_cells)`` bool."""
    inc_crow, inc_cells = incidence
    owner, sp = proposals.members(start, stop)
    cnt = inc_crow[sp + 1] - inc_crow[sp]
    owner2 = torch.repeat_interleave(owner, cnt)
    first = torch.repeat_interleave(inc_crow[sp], cnt)
    offs = torch.arange(owner2.numel(), device=sp.device) - torch.repeat_interleave(
        torch.cumsum(cnt, 0) - cnt, cnt
    )
    on = torch.zeros(stop - start, n_cells, dtype=torch.bool, device=sp.device)
    on[owner2, inc_cells[first + offs]] = True
    return on


def compensation(
    pooled: Tensor,
    nonempty: Tensor,
    mode: Compensation = "code",
    scores: Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """Scale pooled features by the compensation term psi (Eq. 7-8).

    - ``"code"`` (default, the authors' implementation): ``psi = ph*pw / (nonempty + 1)``
      per proposal, times ``(score + 1)`` when ``scores`` are given. A small segment's few
      non-empty bins are scaled up towards a full window.
    - ``"paper"`` (Eq. 7 as printed): ``psi = ph*pw / sum_uv Phi^p_uv`` per proposal and
      channel, the denominator clamped to ``>= eps``; it normalises each channel to mean 1
      over the bins and is meant for non-negative (post-ReLU) features.
    - ``"none"``: no scaling (plain masked RoIPool).

    Arguments:
        pooled: ``(P, C, ph, pw)``; nonempty: ``(P,)`` non-empty bins per proposal;
        scores: ``(P,)`` or None.
    """
    p, _, ph, pw = pooled.shape
    if mode == "none":
        return pooled
    if mode == "code":
        psi = compensation_factor(nonempty, ph * pw, scores).to(pooled.dtype)
        return pooled * psi.view(p, 1, 1, 1)
    if mode == "paper":
        denom = pooled.sum(dim=(2, 3), keepdim=True).clamp(min=eps)
        return pooled * ((ph * pw) / denom)
    raise ValueError(f"unknown compensation {mode!r}; use 'code', 'paper' or 'none'")


def compensation_factor(nonempty: Tensor, bins: int, scores: Tensor | None = None) -> Tensor:
    """The authors' psi ``(P,)``: ``bins / (nonempty + 1)``, times ``(score + 1)`` if given.

    Scores are meant to be objectness in ``[0, 1]`` (MCG's); negative ones count as 0, so a
    generator with signed scores can never flip the features' sign.
    """
    psi = bins / (nonempty.double() + 1.0)
    return psi if scores is None else psi * (scores.double().clamp(min=0) + 1.0)


def moi_pool(
    features: Tensor,
    proposals: ProposalTensors,
    output_size: int | tuple[int, int] = 7,
    spatial_scale: float = 1.0 / 16,
    compensation_mode: Compensation = "code",
    use_scores: bool = True,
    chunk: int = 256,
    incidence: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Shape-invariant MoIPool of one image's proposals (Eq. 5-8).

    Arguments:
        features: ``(1, C, h_f, w_f)`` or ``(C, h_f, w_f)`` feature map of the image.
        proposals: the image's proposals; ``proposals.superpixels`` has the image's size.
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: ``1 / stride`` of the feature map.
        compensation_mode: see :func:`compensation`.
        use_scores: in ``"code"`` mode, also multiply by ``(score + 1)`` as the authors do.
        chunk: proposals whose cell-on maps are built at once (torch path; the C kernel
            builds the plan proposal by proposal).
        incidence: precomputed :func:`superpixel_cell_incidence` (computed when None).
    Returns:
        ``(P, C, ph, pw)`` pooled features (a permuted view of a ``(P, ph, pw, C)`` tensor).
    """
    if features.dim() == 4:
        if features.shape[0] != 1:
            raise ValueError("moi_pool takes one image's features, (1, C, h, w)")
        features = features[0]
    c, hf, wf = features.shape
    ph, pw = _pair(output_size)
    n_cells = hf * wf
    p = len(proposals)
    if incidence is None:
        incidence = superpixel_cell_incidence(
            proposals.superpixels, proposals.num_superpixels, (hf, wf), spatial_scale
        )
    cboxes = cell_boxes(proposals.boxes, spatial_scale)
    if _bm.kernel_available() and features.device.type == "cpu":
        plan, nonempty = _kernel_plan(proposals, incidence, cboxes, ph, pw, hf, wf)
    else:
        plan, nonempty = _plan(proposals, incidence, cboxes, ph, pw, hf, wf, chunk)
    table = features.permute(1, 2, 0).reshape(n_cells, c)
    scores = proposals.scores if use_scores else None
    if compensation_mode == "code":  # per-proposal factor: applied in place inside the op
        psi = compensation_factor(nonempty, ph * pw, scores).to(table.dtype)
        pooled = binned_max(table, plan, psi.repeat_interleave(ph * pw))
        return pooled.view(p, ph, pw, c).permute(0, 3, 1, 2)
    pooled = binned_max(table, plan).view(p, ph, pw, c).permute(0, 3, 1, 2)
    return compensation(pooled, nonempty, compensation_mode, scores)


def _plan(proposals: ProposalTensors, incidence: tuple[Tensor, Tensor], cboxes: Tensor,
          ph: int, pw: int, hf: int, wf: int, chunk: int) -> tuple[BinPlan, Tensor]:
    """The bins' on-cells (Eq. 5-6) in torch, ``chunk`` proposals at a time; also the
    non-empty bins per proposal ``(P,)``."""
    p, n_cells = len(proposals), hf * wf
    dev = cboxes.device
    plan = BinPlan(p * ph * pw)
    nonempty = torch.zeros(p, dtype=torch.int64, device=dev)
    for a in range(0, p, chunk):
        b = min(a + chunk, p)
        on = cell_on(proposals, incidence, a, b, n_cells)
        cb = cboxes[a:b]
        lo_r, hi_r = bin_ranges(cb[:, 1], cb[:, 3] - cb[:, 1], ph, hf)
        lo_c, hi_c = bin_ranges(cb[:, 0], cb[:, 2] - cb[:, 0], pw, wf)
        cells, entry_bin, _ = rect_bin_cells(lo_r, hi_r, lo_c, hi_c, wf)
        keep = on[torch.div(entry_bin, ph * pw, rounding_mode="floor"), cells]  # Eq. 5: Omega
        cells, entry_bin = cells[keep], entry_bin[keep]
        counts = torch.bincount(entry_bin, minlength=(b - a) * ph * pw)
        plan.extend(a * ph * pw + torch.arange((b - a) * ph * pw, device=dev), cells, counts)
        nonempty[a:b] = (counts > 0).view(b - a, ph * pw).sum(1)
    return plan, nonempty


def _kernel_plan(proposals: ProposalTensors, incidence: tuple[Tensor, Tensor], cboxes: Tensor,
                 ph: int, pw: int, hf: int, wf: int) -> tuple[BinPlan, Tensor]:
    """The same plan as :func:`_plan`, built by the C kernel in one pass (CPU tensors)."""
    p = len(proposals)
    lo_r, hi_r = bin_ranges(cboxes[:, 1], cboxes[:, 3] - cboxes[:, 1], ph, hf)
    lo_c, hi_c = bin_ranges(cboxes[:, 0], cboxes[:, 2] - cboxes[:, 0], pw, wf)
    kh, kw = (hi_r - lo_r).clamp(min=0), (hi_c - lo_c).clamp(min=0)
    cap = int((kh.sum(1) * kw.sum(1)).sum())  # every cell of every bin's rectangle
    starts = torch.empty(p * ph * pw + 1, dtype=torch.int64)
    cells = torch.empty(cap, dtype=torch.int64)
    nonempty = torch.empty(p, dtype=torch.int64)
    stamp = torch.empty(hf * wf, dtype=torch.int64)
    args = [proposals.crow, proposals.col, incidence[0], incidence[1], lo_r, hi_r, lo_c, hi_c]
    n = _bm._kernel.moi_plan(*[t.contiguous().numpy() for t in args], ph, pw, wf, hf * wf,
                             starts.numpy(), cells.numpy(), nonempty.numpy(), stamp.numpy())
    return BinPlan.from_csr(p * ph * pw, starts, cells[:n]), nonempty
