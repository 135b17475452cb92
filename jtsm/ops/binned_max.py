"""Max over arbitrary sets of feature cells, with exact argmax gradients: one ``torch.library`` op.

The core of shape-invariant MoIPool (Eq. 5): every output bin is the channel-wise max over a
set of cells of a ``(N_cells, C)`` feature table, given as CSR (``starts`` ``(B + 1,)``,
``cells`` ``(E,)``: bin ``b`` takes rows ``cells[starts[b]:starts[b + 1]]``). An empty bin
gives 0. Backward routes each output's gradient to the first cell (in the bin's cell order)
that holds the max, as RoIPool's argmax does.

``jtsm::binned_max`` and its backward ``jtsm::binned_max_backward`` are registered with
``torch.library.custom_op`` (a fake implementation for shape propagation, autograd through
``register_autograd``), so autograd and ``torch.compile`` see one op. Implementations:

- CPU, float32, NaN-free table: ``jtsm.ops._binnedmax``, an optional C extension built at
  install time (one pass over the bins and their cells, no gathered copies);
- CUDA, floating tables (float32, float64, bfloat16, float16): the Triton kernel of
  :mod:`jtsm.ops.binned_max_triton` when ``triton`` imports (it ships with torch's CUDA
  wheels): one pass over the bins' cells, backward by atomic adds into the argmax cells, no
  gathered copies and no host synchronisation;
- elsewhere (other devices or dtypes, a CPU table holding NaN, the C extension not built or
  triton missing, or ``JTSM_BINNEDMAX=0``, which switches both kernels off): pure torch,
  ``scatter_reduce`` ``amax`` over slices of the cell list. Its temporaries stay within a byte
  budget (16 MB on the CPU, 64 MB on a GPU, :func:`slice_rows` and :func:`chunk_bins`)
  whatever the number of bins, cells or channels; the forward copies nothing to the host, the
  backward one small tensor (the cell ranges of its chunks of bins: one synchronisation per
  call).

Autograd keeps the table, the plan and the per-bin scale, never the output: the max (and its
argmax) is recomputed in backward, so nothing of output size is held between the passes.
"""

import os
from dataclasses import dataclass

import torch
from torch import Tensor

try:
    from jtsm.ops import _binnedmax as _kernel  # type: ignore[attr-defined]
except ImportError:  # not compiled (no C compiler at install time)
    _kernel = None
from jtsm.ops import binned_max_triton as _triton

__all__ = ["BinPlan", "binned_max", "kernel_available", "rect_bin_cells"]

# Bytes of temporaries the torch path holds at once, all together, whatever the number of
# bins, cells or channels: on the CPU a few caches' worth; on a GPU more (each slice costs
# kernel launches). The forward gathers slices of the cell list within the budget; the
# backward takes chunks of bins whose (bins, C) tensors use half of it and slices of their
# cells the other half.
_WORK_BYTES_CPU = 16 << 20
_WORK_BYTES_GPU = 64 << 20
# the int64 index vectors that go with each gathered row (owner bin, position, starts)
_INDEX_BYTES = 24
_TRITON_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def kernel_available() -> bool:
    """Whether the C kernel is built and not switched off (``JTSM_BINNEDMAX=0``)."""
    return _kernel is not None and os.environ.get("JTSM_BINNEDMAX", "1") != "0"


@dataclass
class BinPlan:
    """Which cells each output bin takes the max over, as CSR.

    Attributes:
        starts: ``(num_bins + 1,)`` int64, non-decreasing, ``starts[0] == 0``.
        cells: ``(E,)`` int64 rows of the feature table, bin after bin.
    """

    starts: Tensor
    cells: Tensor

    @property
    def num_bins(self) -> int:
        return self.starts.shape[0] - 1

    @classmethod
    def from_counts(cls, cells: Tensor, counts: Tensor) -> "BinPlan":
        """A plan from the bins' cells laid out bin after bin and ``(B,)`` cells per bin."""
        starts = torch.zeros(counts.shape[0] + 1, dtype=torch.int64, device=counts.device)
        torch.cumsum(counts, 0, out=starts[1:])
        return cls(starts, cells.long())


def rect_bin_cells(
    lo_r: Tensor, hi_r: Tensor, lo_c: Tensor, hi_c: Tensor, width: int, total: int
) -> tuple[Tensor, Tensor, Tensor]:
    """All cells of rectangular bins, flattened (no host synchronisation).

    Arguments:
        lo_r, hi_r: ``(n, ph)`` row ranges of the bins; lo_c, hi_c: ``(n, pw)`` column ranges.
        width: feature map width (cells are ``row * width + col``).
        total: the number of cells of all bins (``counts.sum()``, known by the caller).
    Returns:
        ``cells`` ``(total,)`` int64 cell ids bin after bin (row-major inside a bin),
        ``entry_bin`` ``(total,)`` bin id ``(p * ph + u) * pw + v`` of each cell,
        ``counts`` ``(n * ph * pw,)`` cells per bin.
    """
    n, ph = lo_r.shape
    pw = lo_c.shape[1]
    kh = (hi_r - lo_r).clamp(min=0)
    kw = (hi_c - lo_c).clamp(min=0)
    counts = (kh[:, :, None] * kw[:, None, :]).reshape(-1)
    dev = lo_r.device
    entry_bin = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), counts,
                                        output_size=total)
    first = torch.cumsum(counts, 0) - counts
    offs = torch.arange(total, device=dev) - first[entry_bin]
    b_p = torch.div(entry_bin, ph * pw, rounding_mode="floor")
    b_u = torch.div(entry_bin, pw, rounding_mode="floor") % ph
    b_v = entry_bin % pw
    w = kw[b_p, b_v]
    row = lo_r[b_p, b_u] + torch.div(offs, w, rounding_mode="floor")
    col = lo_c[b_p, b_v] + offs % w
    return row * width + col, entry_bin, counts


# ---------------------------------------------------------------------------------------------
# implementations


def _use_kernel(table: Tensor, scale: Tensor | None) -> bool:
    return (kernel_available() and table.device.type == "cpu" and table.dtype == torch.float32
            and table.dim() == 2 and (scale is None or scale.device.type == "cpu")
            and not bool(torch.isnan(table).any()))


def _use_triton(table: Tensor, scale: Tensor | None) -> bool:
    """CUDA tables of a floating dtype go to the Triton kernel when triton imports."""
    return (table.device.type == "cuda" and table.dtype in _TRITON_DTYPES and table.dim() == 2
            and (scale is None or scale.device == table.device)
            and os.environ.get("JTSM_BINNEDMAX", "1") != "0" and _triton.available())


def _work_bytes(device: torch.device) -> int:
    """The torch path's budget for its temporaries on ``device``, in bytes."""
    return _WORK_BYTES_CPU if device.type == "cpu" else _WORK_BYTES_GPU


def _fit(budget: int, row_bytes: int) -> int:
    """How many rows of ``row_bytes`` bytes each fit in ``budget`` bytes (at least 1)."""
    return max(1, budget // max(1, row_bytes))


def slice_rows(c: int, itemsize: int, budget: int, backward: bool) -> int:
    """Entries of the cell list one slice of the torch path takes, within ``budget`` bytes.

    A forward slice holds its gathered rows ``(n, C)`` and two int64 index vectors ``(n,)``
    (owner bin, positions); a backward slice (:func:`_first_max`) at most the gathered rows
    and the bins' maxima of them (``2 x itemsize``) with their bool comparison, or that
    comparison with the int64 positions it selects (``9`` bytes) per element, plus the same
    index vectors.
    """
    per_elem = 2 * itemsize + 9 if backward else itemsize
    return _fit(budget, c * per_elem + _INDEX_BYTES)


def chunk_bins(c: int, itemsize: int, budget: int) -> int:
    """Bins of one chunk of the torch path's backward, within ``budget`` bytes: their
    ``(n, C)`` tensors are the running max (``itemsize``) and the int64 first-max positions
    while the max is found, then the positions, their argmax cells (int64), a bool mask and
    the masked gradient (``itemsize``): at most ``itemsize + 17`` bytes per element; plus
    the chunk's ``(n + 1,)`` int64 starts."""
    return _fit(budget, c * (itemsize + 17) + _INDEX_BYTES)


def _owner(starts: Tensor, a: int, n: int) -> Tensor:
    """``(n,)`` bin of the cell-list entries ``a .. a + n - 1`` (no ``(E,)`` temporary)."""
    pos = torch.arange(a, a + n, device=starts.device)
    return torch.searchsorted(starts, pos, right=True).sub_(1)


def _torch_max(table: Tensor, starts: Tensor, cells: Tensor, budget: int) -> Tensor:
    """Unscaled binned max ``(B, C)`` in torch, empty bins 0; the cell list is gathered in
    slices of at most ``budget`` bytes."""
    nb, c, e = starts.shape[0] - 1, table.shape[1], cells.shape[0]
    out = table.new_full((nb, c), float("-inf"))
    step = slice_rows(c, table.element_size(), budget, backward=False)
    for a in range(0, e, step):
        vals = table.index_select(0, cells[a : a + step])
        own = _owner(starts, a, vals.shape[0])
        out.scatter_reduce_(0, own[:, None].expand(-1, c), vals, "amax", include_self=True)
        del vals, own  # before the next slice is gathered
    return out.masked_fill_((starts[1:] == starts[:-1]).unsqueeze(1), 0)


def _forward_impl(table: Tensor, starts: Tensor, cells: Tensor,
                  scale: Tensor | None) -> Tensor:
    c = table.shape[1]
    if _use_kernel(table, scale):
        table = table.contiguous()
        out = table.new_empty(starts.shape[0] - 1, c)
        sc = None if scale is None else scale.detach().float().contiguous()
        _kernel.forward(table.numpy(), c, starts.contiguous().numpy(),
                        cells.contiguous().numpy(), None if sc is None else sc.numpy(),
                        out.numpy())
        return out
    if _use_triton(table, scale):
        return _triton.binned_max_forward(table, starts, cells, scale)[0]
    out = _torch_max(table, starts, cells, _work_bytes(table.device))
    if scale is not None:
        out.mul_(scale.to(out.dtype).unsqueeze(1))
    return out


def _backward_impl(grad_out: Tensor, table: Tensor, starts: Tensor, cells: Tensor,
                   scale: Tensor | None) -> Tensor:
    c, e, nb = table.shape[1], cells.shape[0], starts.shape[0] - 1
    grad_out = grad_out.contiguous()
    if _use_kernel(table, scale) and grad_out.dtype == torch.float32:
        grad = torch.zeros(table.shape, dtype=table.dtype, device=table.device)
        scratch = torch.empty(2 * c, dtype=torch.int32)  # argmax cells + running maxima
        sc = None if scale is None else scale.detach().float().contiguous()
        _kernel.backward(table.contiguous().numpy(), c, starts.contiguous().numpy(),
                         cells.contiguous().numpy(), None if sc is None else sc.numpy(),
                         grad_out.numpy(), grad.numpy(), scratch.numpy())
        return grad
    if _use_triton(table, scale) and grad_out.device == table.device:
        return _triton.binned_max_backward(grad_out, table, starts, cells, scale)
    grad = torch.zeros(table.shape, dtype=table.dtype, device=table.device)
    if e == 0:
        return grad
    # Bins in chunks, so that every temporary is a (bins, C) tensor of one chunk or a slice of
    # its cells, half the byte budget each. The chunks' cell ranges come to the host in one
    # transfer (one synchronisation per call, whatever the number of bins).
    budget = _work_bytes(table.device) // 2
    rows = chunk_bins(c, table.element_size(), budget)
    bounds = torch.cat([starts[0:nb:rows], starts[nb:]]).tolist()
    chan = torch.arange(c, device=table.device)
    flat = grad.view(-1)
    for i, b0 in enumerate(range(0, nb, rows)):
        b1, s0, s1 = min(b0 + rows, nb), bounds[i], bounds[i + 1]
        if s1 == s0:
            continue
        sub_cells, n = cells[s0:s1], s1 - s0
        first = _first_max(table, starts[b0 : b1 + 1] - s0, sub_cells, budget)
        valid = first < n  # an empty bin or a NaN max has no argmax: no gradient
        cell = sub_cells[first.clamp_(max=n - 1)]
        del first
        cell.mul_(c).add_(chan)  # flat index into the table's gradient
        src = torch.where(valid, grad_out[b0:b1], 0)
        del valid
        if scale is not None:
            src.mul_(scale[b0:b1].to(src.dtype).unsqueeze(1))
        flat.index_add_(0, cell.view(-1), src.view(-1).to(flat.dtype))
        del cell, src  # before the next chunk's
    return grad


def _first_max(table: Tensor, starts: Tensor, cells: Tensor, budget: int) -> Tensor:
    """``(B, C)`` position in ``cells`` of the first entry of each bin holding its max (``E``
    where none does: an empty bin or a NaN max); temporaries beyond the ``(B, C)`` max and
    positions within ``budget`` bytes."""
    nb, c, e = starts.shape[0] - 1, table.shape[1], cells.shape[0]
    vmax = _torch_max(table, starts, cells, budget)
    first = torch.full((nb, c), e, dtype=torch.int64, device=table.device)
    step = slice_rows(c, table.element_size(), budget, backward=True)
    for a in range(0, e, step):
        vals = table.index_select(0, cells[a : a + step])
        own = _owner(starts, a, vals.shape[0])
        hit = vals == vmax.index_select(0, own)
        del vals
        pos = torch.arange(a, a + own.shape[0], device=table.device)[:, None]
        first.scatter_reduce_(0, own[:, None].expand(-1, c), torch.where(hit, pos, e), "amin",
                              include_self=True)
        del hit, own, pos  # before the next slice is gathered
    return first


# ---------------------------------------------------------------------------------------------
# the registered ops


@torch.library.custom_op("jtsm::binned_max", mutates_args=())
def _binned_max_op(table: Tensor, starts: Tensor, cells: Tensor,
                   scale: Tensor | None) -> Tensor:
    return _forward_impl(table, starts, cells, scale)


@_binned_max_op.register_fake
def _(table: Tensor, starts: Tensor, cells: Tensor, scale: Tensor | None) -> Tensor:
    return table.new_empty(starts.shape[0] - 1, table.shape[1])


@torch.library.custom_op("jtsm::binned_max_backward", mutates_args=())
def _binned_max_backward_op(grad_out: Tensor, table: Tensor, starts: Tensor, cells: Tensor,
                            scale: Tensor | None) -> Tensor:
    return _backward_impl(grad_out, table, starts, cells, scale)


@_binned_max_backward_op.register_fake
def _(grad_out: Tensor, table: Tensor, starts: Tensor, cells: Tensor,
      scale: Tensor | None) -> Tensor:
    return torch.empty_like(table)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    table, starts, cells, scale = inputs
    ctx.save_for_backward(table, starts, cells, scale)


def _backward(ctx, grad: Tensor):  # noqa: ANN001, ANN202
    table, starts, cells, scale = ctx.saved_tensors
    return _binned_max_backward_op(grad, table, starts, cells, scale), None, None, None


_binned_max_op.register_autograd(_backward, setup_context=_setup_context)


def binned_max(table: Tensor, plan: BinPlan, scale: Tensor | None = None) -> Tensor:
    """Channel-wise max over each bin's cells, optionally scaled per bin (``jtsm::binned_max``).

    Arguments:
        table: ``(N_cells, C)`` features, one row per feature-map cell.
        plan: the cells of every bin.
        scale: ``(plan.num_bins,)`` factor per bin (no gradient), e.g. MoIPool's compensation
            term; None for 1.
    Returns:
        ``(plan.num_bins, C)``; an empty bin gives 0.
    """
    if scale is not None:
        scale = scale.detach().to(table.dtype)
    return _binned_max_op(table, plan.starts, plan.cells, scale)
