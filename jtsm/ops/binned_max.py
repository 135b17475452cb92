"""Max over arbitrary sets of feature cells, with exact argmax gradients.

The common core of RoIPool and shape-invariant MoIPool (Eq. 5): every output bin is the
channel-wise max over a set of cells of a ``(h_f * w_f, C)`` feature table. Bins with the same
number of cells ``K`` are gathered together as ``(n, K, C)`` blocks sized to stay in cache, so
no padding is ever gathered and the working memory does not depend on the number of bins.

Backward routes each output's gradient to the first cell (in the bin's cell order, row-major)
that holds the max, as RoIPool's argmax does. The max and its argmax are recomputed in backward
from the feature table, block by block, instead of being stored: autograd keeps no tensor of
output size (the output can even be scaled in place by a per-bin factor).

On the CPU with float32 features, both directions run in ``jtsm.ops._binnedmax``, an optional
C extension built at install time: one pass over the bins and their cells with no gathered
copies (the same values; gradients equal up to the order of float additions). The torch path
here is used elsewhere (GPU, other dtypes, a table holding NaN), without the extension, or with
``JTSM_BINNEDMAX=0``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import Tensor

try:
    from jtsm.ops import _binnedmax as _kernel  # type: ignore[attr-defined]
except ImportError:  # not compiled (no C compiler at install time)
    _kernel = None

__all__ = ["BinPlan", "binned_max", "kernel_available", "rect_bin_cells"]


def kernel_available() -> bool:
    """Whether the C kernel is built and not switched off (``JTSM_BINNEDMAX=0``)."""
    return _kernel is not None and os.environ.get("JTSM_BINNEDMAX", "1") != "0"

# elements (K * C * rows) gathered at once; 2**20 floats = 4 MB, about an L2 cache
_BLOCK_ELEMS = 1 << 20


@dataclass
class BinPlan:
    """Which cells each output bin takes the max over.

    Bins are added with :meth:`extend` as flat cell lists; the two paths read them as
    :meth:`csr` (the C kernel) or :attr:`groups` (the torch path), each built on first use.

    Attributes:
        num_bins: number of output bins (rows of the output).
        groups: ``(bins, cells)`` pairs: ``bins`` ``(n,)`` int64 output rows, ``cells``
            ``(n, K)`` int64 rows of the feature table, one group per distinct ``K > 0``.
            Bins in no group are empty and output 0.
    """

    num_bins: int
    _flat: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list, repr=False)
    _groups: list[tuple[Tensor, Tensor]] | None = field(default=None, repr=False)
    _csr: tuple[Tensor, Tensor] | None = field(default=None, repr=False)

    @classmethod
    def from_csr(cls, num_bins: int, starts: Tensor, cells: Tensor) -> BinPlan:
        """A plan of all ``num_bins`` bins given as CSR (see :meth:`csr`)."""
        plan = cls(num_bins)
        plan.extend(torch.arange(num_bins, device=cells.device), cells, starts[1:] - starts[:-1])
        plan._csr = (starts.contiguous(), cells.contiguous())
        return plan

    def extend(self, bin_ids: Tensor, cells: Tensor, counts: Tensor) -> None:
        """Add bins given as a flat cell list.

        Arguments:
            bin_ids: ``(B,)`` global output rows of the bins, in the order of ``counts``.
            cells: ``(E,)`` cells of all bins, bin after bin.
            counts: ``(B,)`` number of cells of each bin (``counts.sum() == E``).
        """
        if cells.numel() == 0:
            return
        self._flat.append((bin_ids.long(), cells.long(), counts.long()))
        self._groups, self._csr = None, None

    @property
    def groups(self) -> list[tuple[Tensor, Tensor]]:
        if self._groups is None:
            self._groups = []
            for bin_ids, cells, counts in self._flat:
                starts = torch.cumsum(counts, 0) - counts
                for k in torch.unique(counts).tolist():
                    if k == 0:
                        continue
                    sel = torch.nonzero(counts == k).squeeze(1)
                    idx = starts[sel, None] + torch.arange(k, device=cells.device)
                    self._groups.append((bin_ids[sel], cells[idx]))
        return self._groups

    def csr(self) -> tuple[Tensor, Tensor]:
        """The plan as CSR: ``starts`` ``(num_bins + 1,)`` and ``cells`` ``(E,)`` int64, bin
        ``b``'s cells being ``cells[starts[b]:starts[b + 1]]`` in the order they were added."""
        if self._csr is None:
            dev = self._flat[0][1].device if self._flat else torch.device("cpu")
            counts = torch.zeros(self.num_bins, dtype=torch.int64, device=dev)
            if self._flat:
                bins = torch.cat([b for b, _, _ in self._flat])
                cnt = torch.cat([c for _, _, c in self._flat])
                cells = torch.cat([c for _, c, _ in self._flat])
                owner = torch.repeat_interleave(bins, cnt)
                if owner.numel() > 1 and bool((owner[1:] < owner[:-1]).any()):
                    cells = cells[torch.sort(owner, stable=True).indices]
                counts.index_add_(0, bins, cnt)
            else:
                cells = torch.zeros(0, dtype=torch.int64, device=dev)
            starts = torch.zeros(self.num_bins + 1, dtype=torch.int64, device=dev)
            starts[1:] = torch.cumsum(counts, 0)
            self._csr = (starts.contiguous(), cells.contiguous())
        return self._csr


def rect_bin_cells(
    lo_r: Tensor, hi_r: Tensor, lo_c: Tensor, hi_c: Tensor, width: int
) -> tuple[Tensor, Tensor, Tensor]:
    """All cells of rectangular bins, flattened.

    Arguments:
        lo_r, hi_r: ``(n, ph)`` row ranges of the bins; lo_c, hi_c: ``(n, pw)`` column ranges.
        width: feature map width (cells are ``row * width + col``).
    Returns:
        ``cells`` ``(E,)`` int64 cell ids bin after bin (row-major inside a bin),
        ``entry_bin`` ``(E,)`` local bin id ``(p * ph + u) * pw + v`` of each cell,
        ``counts`` ``(n * ph * pw,)`` cells per bin.
    """
    n, ph = lo_r.shape
    pw = lo_c.shape[1]
    kh = (hi_r - lo_r).clamp(min=0)
    kw = (hi_c - lo_c).clamp(min=0)
    counts = (kh[:, :, None] * kw[:, None, :]).reshape(-1)
    nb = counts.numel()
    dev = lo_r.device
    entry_bin = torch.repeat_interleave(torch.arange(nb, device=dev), counts)
    offs = torch.arange(entry_bin.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[
        entry_bin
    ]
    b_p = entry_bin // (ph * pw)
    b_u = (entry_bin // pw) % ph
    b_v = entry_bin % pw
    w = kw[b_p, b_v]
    row = lo_r[b_p, b_u] + torch.div(offs, w, rounding_mode="floor")
    col = lo_c[b_p, b_v] + offs % w
    return row * width + col, entry_bin, counts


def _blocks(plan: BinPlan, c: int):
    """Yield ``(bins, cells, k)`` pieces of at most ``_BLOCK_ELEMS`` gathered elements."""
    for bins, cells in plan.groups:
        k = cells.shape[1]
        step = max(1, _BLOCK_ELEMS // max(1, k * c))
        for i in range(0, bins.numel(), step):
            yield bins[i : i + step], cells[i : i + step], k


class _BinnedMax(torch.autograd.Function):
    # Gathers go into one reused buffer: a fresh multi-MB tensor per block costs more in page
    # faults than the gather itself. Nothing of output size is saved for backward: the max is
    # recomputed from the table there, so the output can be scaled in place.
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, table: Tensor, plan: BinPlan, scale: Tensor | None
    ) -> Tensor:
        c = table.shape[1]
        ctx.plan = plan
        ctx.use_kernel = _use_kernel(table, scale)
        if ctx.use_kernel:
            table = table.contiguous()
            starts, cells = plan.csr()
            out = table.new_empty(plan.num_bins, c)
            sc = None if scale is None else scale.detach().float().contiguous()
            _kernel.forward(table.numpy(), c, starts.numpy(), cells.numpy(),
                            None if sc is None else sc.numpy(), out.numpy())
            ctx.save_for_backward(table, sc)
            return out
        out = table.new_zeros(plan.num_bins, c)
        cap = max([_BLOCK_ELEMS] + [cells.shape[1] * c for _, cells in plan.groups])
        buf = table.new_empty(cap)
        red = table.new_empty(max(1, _BLOCK_ELEMS // c) * c)
        for bins, cb, k in _blocks(plan, c):
            m = cb.shape[0]
            g = buf[: m * k * c].view(m * k, c)
            torch.index_select(table, 0, cb.reshape(-1), out=g)
            if k > 1:
                g = torch.amax(g.view(m, k, c), 1, out=red[: m * c].view(m, c))
            out.index_copy_(0, bins, g)
        if scale is not None:
            out.mul_(scale.to(out.dtype).unsqueeze(1))
        ctx.save_for_backward(table, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        table, scale = ctx.saved_tensors
        plan: BinPlan = ctx.plan
        c = table.shape[1]
        grad = torch.zeros(table.shape, dtype=table.dtype, device=table.device)
        grad_out = grad_out.contiguous()
        if ctx.use_kernel:
            starts, cells = plan.csr()
            scratch = torch.empty(2 * c, dtype=torch.int32)  # argmax cells + running maxima
            _kernel.backward(table.numpy(), c, starts.numpy(), cells.numpy(),
                             None if scale is None else scale.numpy(),
                             grad_out.float().numpy(), grad.numpy(), scratch.numpy())
            return grad, None, None
        flat_grad = grad.view(-1)
        chan = torch.arange(c, device=table.device)
        cap = max([_BLOCK_ELEMS] + [cells.shape[1] * c for _, cells in plan.groups])
        buf = table.new_empty(cap)
        for bins, cb, k in _blocks(plan, c):
            m = cb.shape[0]
            src = grad_out.index_select(0, bins)
            if scale is not None:
                src.mul_(scale.index_select(0, bins).to(src.dtype).unsqueeze(1))
            if k == 1:  # a single cell: the gradient goes straight to it
                grad.index_add_(0, cb[:, 0], src)
                continue
            g = buf[: m * k * c].view(m * k, c)
            torch.index_select(table, 0, cb.reshape(-1), out=g)
            g = g.view(m, k, c)
            vmax = g.amax(1, keepdim=True)
            # rank[k'] = K - k': 1.0 at hits times the rank, so the max is the first hit
            # (argmax routing); 0 only when the max is NaN
            rank = torch.arange(k, 0, -1, device=table.device, dtype=table.dtype).view(1, k, 1)
            r = g.eq_(vmax).mul_(rank).amax(1)
            first = (k - r.long()).clamp_(max=k - 1)
            cell = cb.gather(1, first)  # (m, C) argmax cell per channel
            src.mul_(r > 0)
            flat_grad.index_add_(0, (cell * c + chan).reshape(-1), src.reshape(-1))
        return grad, None, None


def _use_kernel(table: Tensor, scale: Tensor | None) -> bool:
    return (kernel_available() and table.device.type == "cpu" and table.dtype == torch.float32
            and table.dim() == 2 and (scale is None or scale.device.type == "cpu")
            and not bool(torch.isnan(table).any()))


def binned_max(table: Tensor, plan: BinPlan, scale: Tensor | None = None) -> Tensor:
    """Channel-wise max over each bin's cells, optionally scaled per bin.

    Arguments:
        table: ``(N_cells, C)`` features, one row per feature-map cell.
        plan: the cells of every bin.
        scale: ``(plan.num_bins,)`` factor per bin (no gradient), applied in place, e.g.
            MoIPool's compensation term; None for 1.
    Returns:
        ``(plan.num_bins, C)``; an empty bin gives 0.
    """
    return _BinnedMax.apply(table, plan, scale)
