"""Shape-invariant MoIPool (paper Sec. 3.3, Eq. 5-8), on RoIPool's bins.

Conventions (those of ``torchvision.ops.roi_pool``, so a rectangle segment pools exactly as
RoIPool pools its box, forward and backward):

- **Cells a segment turns on (Eq. 6).** Pixel ``p`` (row or column index) belongs to feature
  cell ``round(p * spatial_scale)`` (halves away from zero, clipped to the map), i.e. cell
  ``i``'s footprint is the pixels that round to it; the footprints partition the image. A
  cell is *on* for a proposal when a pixel of its footprint belongs to the segment.
- **Bins (Eq. 5).** A proposal's box ``[x0, y0, x1, y1]`` (:mod:`jtsm.structures`: exclusive
  right/bottom edge) spans the pixels ``x0 .. x1-1``; its bins are RoIPool's bins of the
  inclusive box ``[x0, y0, x1-1, y1-1]`` (:func:`jtsm.ops.boxes.roi_pool_bins`): cells
  ``round(x0 * s) .. round((x1-1) * s)``, split into ``floor``/``ceil`` sub-windows. Every
  on-cell of a segment lies inside its box's cells, so a rectangle's on-cells are exactly its
  box's cells. Pixel-to-cell rounding and bins use the features' floating-point precision
  (float64 for float64 features, else float32), as torchvision's kernels do.
- Each bin takes the max over its on-cells only; a bin with none gives 0. The pooled map is
  then scaled by the compensation term (Eq. 7-8), see :func:`compensation`.

Nothing here builds dense ``proposal x H x W`` masks. Per image, the sparse superpixel x cell
incidence is computed once; a ``(P, h_f * w_f)`` bool cell-on map and the bins' on-cells (CSR)
follow from it, and the max runs in :mod:`jtsm.ops.binned_max` (one ``torch.library`` op: the
C kernel on the CPU, a Triton kernel on CUDA, else torch within a byte budget), so memory does
not grow with the number of channels times proposals beyond the output itself.

**Where the plan is built.** Proposals on the host (as the training loader makes them) are
planned on the host, whatever the features' device: by the C kernel in one pass when it is
built, else in torch; the plan, the non-empty bin counts and the compensation factors then go
to the features' device in non-blocking copies. On a GPU the host thus plans while the device
runs the backbone, and nothing waits for the device: no host synchronisation per image (none
in the Triton kernel either; the op's torch path, used without triton, has 1 in backward, see
:mod:`jtsm.ops.binned_max`). Proposals already on a GPU are planned there in torch, in chunks
of proposals, with a fixed number of host synchronisations per image, none per proposal: 4
(the incidence's ``unique``, the size of the cell-on expansion, the bins' sizes, the on-cells
per chunk).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

from jtsm.config import Compensation
from jtsm.ops import binned_max as _bm
from jtsm.ops.binned_max import BinPlan, binned_max, rect_bin_cells
from jtsm.ops.boxes import inclusive_boxes, roi_pool_bins, round_half_away
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.sync_counter import on_host
from jtsm.ops.transfer import to_device

__all__ = [
    "pixel_cells",
    "superpixel_cell_incidence",
    "cell_on",
    "moi_bins",
    "moi_pool",
    "compensation",
    "compensation_factor",
    "Compensation",
]



def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _calc_dtype(features: Tensor) -> torch.dtype:
    """The precision of the bin arithmetic: torchvision computes in the features' type."""
    return torch.float64 if features.dtype == torch.float64 else torch.float32


def pixel_cells(
    size: int, n_cells: int, spatial_scale: float, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Cell of every pixel along one axis (Eq. 6): ``(size,)`` int64 ``round(p * scale)``,
    halves away from zero, clipped to ``[0, n_cells)``."""
    p = torch.arange(size, dtype=dtype, device=device)
    cell = round_half_away(p * torch.tensor(spatial_scale, dtype=dtype)).long()
    return cell.clamp(0, max(n_cells - 1, 0))


def superpixel_cell_incidence(
    superpixels: Tensor, num_superpixels: int, feat_size: tuple[int, int], spatial_scale: float,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Sparse superpixel x cell incidence: which feature cells each superpixel touches.

    Arguments:
        superpixels: ``(H, W)`` int64 superpixel map.
        feat_size: ``(h_f, w_f)``.
        dtype: precision of the pixel-to-cell rounding (the features' one, see the module).
    Returns:
        CSR ``(crow (S + 1,), cells (nnz,))``: superpixel ``k`` touches cells
        ``cells[crow[k]:crow[k+1]]`` (cell id ``row * w_f + col``, ascending).

    On the CPU only the pixels whose (superpixel, cell) key differs from both their left and
    upper neighbours' go to ``unique`` (every key keeps its top-left pixel, so the result is
    the same): a few percent of the pixels, ~10x faster at training sizes. On a GPU all of
    them do (a boolean selection there would be one more host synchronisation).
    """
    h, w = superpixels.shape
    hf, wf = feat_size
    dev = superpixels.device
    ci = pixel_cells(h, hf, spatial_scale, dtype, dev)
    cj = pixel_cells(w, wf, spatial_scale, dtype, dev)
    n_cells = hf * wf
    if dev.type == "cpu":
        kt = torch.int32 if num_superpixels * n_cells < 2**31 else torch.int64
        keys = superpixels.to(kt) * n_cells + (ci.to(kt)[:, None] * wf + cj.to(kt)[None, :])
        first = torch.ones(h, w, dtype=torch.bool)
        torch.ne(keys[:, 1:], keys[:, :-1], out=first[:, 1:])
        first[1:, :] &= keys[1:, :] != keys[:-1, :]
        keys = torch.unique(keys[first]).long()  # sorted
    else:
        keys = superpixels.long() * n_cells + (ci[:, None] * wf + cj[None, :])
        keys = torch.unique(keys.reshape(-1))  # sorted
    sp = torch.div(keys, n_cells, rounding_mode="floor")
    crow = torch.zeros(num_superpixels + 1, dtype=torch.int64, device=dev)
    counts = torch.zeros(num_superpixels, dtype=torch.int64, device=dev)
    crow[1:] = torch.cumsum(counts.index_add_(0, sp, torch.ones_like(sp)), 0)
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
    total = int(cnt.sum())  # host sync: the size of the expansion
    owner2 = torch.repeat_interleave(owner, cnt, output_size=total)
    first = torch.repeat_interleave(inc_crow[sp] - (torch.cumsum(cnt, 0) - cnt), cnt,
                                    output_size=total)
    pos = first + torch.arange(total, device=sp.device)
    on = torch.zeros((stop - start) * n_cells, dtype=torch.bool, device=sp.device)
    on[owner2 * n_cells + inc_cells[pos]] = True
    return on.view(stop - start, n_cells)


def moi_bins(
    proposals: ProposalTensors, spatial_scale: float, ph: int, pw: int, hf: int, wf: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """RoIPool's bins of the proposals' boxes (see the module): ``lo_r, hi_r`` ``(P, ph)``,
    ``lo_c, hi_c`` ``(P, pw)`` int64."""
    return roi_pool_bins(inclusive_boxes(proposals.boxes.to(dtype)), spatial_scale, ph, pw, hf,
                         wf, dtype)


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
    incidence: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Shape-invariant MoIPool of one image's proposals (Eq. 5-8).

    Arguments:
        features: ``(1, C, h_f, w_f)`` or ``(C, h_f, w_f)`` feature map of the image.
        proposals: the image's proposals on the features' device; ``proposals.superpixels``
            has the image's size; boxes as :mod:`jtsm.structures` (exclusive right/bottom).
        output_size: ``ph`` or ``(ph, pw)``.
        spatial_scale: ``1 / stride`` of the feature map.
        compensation_mode: see :func:`compensation`.
        use_scores: in ``"code"`` mode, also multiply by ``(score + 1)`` as the authors do.
        incidence: precomputed :func:`superpixel_cell_incidence` (computed when None), on
            the proposals' device.
    Returns:
        ``(P, C, ph, pw)`` pooled features (a permuted view of a ``(P, ph, pw, C)`` tensor).
        With ``compensation_mode="none"``, a rectangle segment's output (and its gradient)
        equals ``torchvision.ops.roi_pool`` on ``inclusive_boxes(box)``.
    """
    if features.dim() == 4:
        if features.shape[0] != 1:
            raise ValueError("moi_pool takes one image's features, (1, C, h, w)")
        features = features[0]
    c, hf, wf = features.shape
    ph, pw = _pair(output_size)
    n_cells = hf * wf
    p = len(proposals)
    dt = _calc_dtype(features)
    dev = features.device
    host = proposals.device.type == "cpu"  # planned on the host, whatever the features' device
    with on_host() if host else nullcontext():
        if incidence is None:
            incidence = superpixel_cell_incidence(
                proposals.superpixels, proposals.num_superpixels, (hf, wf), spatial_scale, dt
            )
        bins = moi_bins(proposals, spatial_scale, ph, pw, hf, wf, dt)
        if _bm.kernel_available() and host:
            plan, nonempty = _kernel_plan(proposals, incidence, bins, wf, n_cells)
        else:
            plan, nonempty = _plan(proposals, incidence, bins, wf, n_cells)
        scores = proposals.scores if use_scores else None
        psi = compensation_factor(nonempty, ph * pw, scores)
        if proposals.device != dev:  # one batch of non-blocking copies (pinned on a GPU)
            plan, nonempty, psi, scores = _moved(dev, plan, nonempty, psi, scores)
    table = features.permute(1, 2, 0).reshape(n_cells, c)
    if compensation_mode == "code":  # per-proposal factor: applied inside the op
        pooled = binned_max(table, plan, psi.repeat_interleave(ph * pw))
        return pooled.view(p, ph, pw, c).permute(0, 3, 1, 2)
    pooled = binned_max(table, plan).view(p, ph, pw, c).permute(0, 3, 1, 2)
    return compensation(pooled, nonempty, compensation_mode, scores)


def _moved(device: torch.device, plan: BinPlan, nonempty: Tensor, psi: Tensor,
           scores: Tensor | None) -> tuple[BinPlan, Tensor, Tensor, Tensor | None]:
    """The plan and the per-proposal tensors on ``device`` (host tensors pinned first on a
    GPU, then copied without blocking, :mod:`jtsm.ops.transfer`)."""
    ts = [plan.starts, plan.cells, nonempty, psi] + ([] if scores is None else [scores])
    moved = [to_device(t, device) for t in ts]
    return (BinPlan(moved[0], moved[1]), moved[2], moved[3],
            None if scores is None else moved[4])


# bin cells (before masking) expanded at once by the torch plan builder: 2**23 entries, a few
# int64 arrays of 64 MB each
_PLAN_ENTRIES = 1 << 23


def _proposal_chunks(per_proposal: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive proposal ranges of at most ``limit`` entries each (a larger proposal alone)."""
    chunks, a, acc = [], 0, 0
    for i, n in enumerate(per_proposal):
        if i > a and acc + n > limit:
            chunks.append((a, i))
            a, acc = i, 0
        acc += n
    if a < len(per_proposal):
        chunks.append((a, len(per_proposal)))
    return chunks


@torch.compiler.disable  # data-dependent sizes: runs eagerly under torch.compile
def _plan(proposals: ProposalTensors, incidence: tuple[Tensor, Tensor],
          bins: tuple[Tensor, Tensor, Tensor, Tensor], wf: int,
          n_cells: int) -> tuple[BinPlan, Tensor]:
    """The bins' on-cells (Eq. 5-6) in torch; also the non-empty bins per proposal ``(P,)``.

    The bins' rectangles are expanded in chunks of proposals of at most ``_PLAN_ENTRIES``
    cells, twice: once to count each chunk's on-cells, once to keep them. Host
    synchronisations: 3 whatever the number of proposals (the cell-on expansion's size, the
    rectangles' sizes per proposal, the on-cells per chunk).
    """
    lo_r, hi_r, lo_c, hi_c = bins
    p, ph = lo_r.shape
    pw = lo_c.shape[1]
    dev = lo_r.device
    on = cell_on(proposals, incidence, 0, p, n_cells).view(-1)
    kh, kw = (hi_r - lo_r).clamp(min=0), (hi_c - lo_c).clamp(min=0)
    per_proposal = (kh.sum(1) * kw.sum(1)).tolist()  # host sync: every cell of every bin
    chunks = _proposal_chunks(per_proposal, _PLAN_ENTRIES)

    def chunk_cells(a: int, b: int) -> tuple[Tensor, Tensor, Tensor]:
        total = sum(per_proposal[a:b])
        cells, entry_bin, _ = rect_bin_cells(lo_r[a:b], hi_r[a:b], lo_c[a:b], hi_c[a:b], wf,
                                             total)
        owner = a + torch.div(entry_bin, ph * pw, rounding_mode="floor")
        return cells, entry_bin + a * ph * pw, on[owner * n_cells + cells]  # Eq. 5: Omega

    kept = [chunk_cells(a, b)[2].sum() for a, b in chunks]
    kept_n = torch.stack(kept).tolist() if kept else []  # host sync: on-cells per chunk
    all_cells, all_bins = [], []
    for (a, b), n in zip(chunks, kept_n):
        cells, entry_bin, keep = chunk_cells(a, b)
        idx = torch.nonzero_static(keep, size=n).squeeze(1)
        all_cells.append(cells[idx])
        all_bins.append(entry_bin[idx])
    empty = torch.zeros(0, dtype=torch.int64, device=dev)
    cells = torch.cat(all_cells) if all_cells else empty
    entry_bin = torch.cat(all_bins) if all_bins else empty
    counts = torch.zeros(p * ph * pw, dtype=torch.int64, device=dev)
    counts.index_add_(0, entry_bin, torch.ones_like(entry_bin))
    nonempty = (counts > 0).view(p, ph * pw).sum(1)
    return BinPlan.from_counts(cells, counts), nonempty


@torch.compiler.disable  # a C call building index tensors: runs eagerly under torch.compile
def _kernel_plan(proposals: ProposalTensors, incidence: tuple[Tensor, Tensor],
                 bins: tuple[Tensor, Tensor, Tensor, Tensor], wf: int,
                 n_cells: int) -> tuple[BinPlan, Tensor]:
    """The same plan as :func:`_plan`, built by the C kernel in one pass (CPU tensors)."""
    lo_r, hi_r, lo_c, hi_c = bins
    p, ph = lo_r.shape
    pw = lo_c.shape[1]
    kh, kw = (hi_r - lo_r).clamp(min=0), (hi_c - lo_c).clamp(min=0)
    cap = int((kh.sum(1) * kw.sum(1)).sum())  # every cell of every bin's rectangle
    starts = torch.empty(p * ph * pw + 1, dtype=torch.int64)
    cells = torch.empty(cap, dtype=torch.int64)
    nonempty = torch.empty(p, dtype=torch.int64)
    stamp = torch.empty(n_cells, dtype=torch.int64)
    args = [proposals.crow, proposals.col, incidence[0], incidence[1], lo_r, hi_r, lo_c, hi_c]
    n = _bm._kernel.moi_plan(*[t.contiguous().numpy() for t in args], ph, pw, wf, n_cells,
                             starts.numpy(), cells.numpy(), nonempty.numpy(), stamp.numpy())
    return BinPlan(starts, cells[:n]), nonempty
