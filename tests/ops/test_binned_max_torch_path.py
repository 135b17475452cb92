"""The binned max's torch path (``JTSM_BINNEDMAX=0``, and CUDA without triton): its working
memory stays within a byte budget, whatever the number of bins, channels or the dtype.

The measure is real: a ``TorchDispatchMode`` sees every tensor the path creates and, through
the storages' finalizers, when each is freed, so the peak of the bytes alive at once is known
(the output, the table's gradient and the inputs excluded).
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from jtsm.ops import binned_max as bm
from jtsm.ops.binned_max import BinPlan


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the mode and alive at the same time."""

    def __init__(self, *existing: torch.Tensor | None) -> None:
        super().__init__()
        self.seen: dict[int, weakref.ref] = {}
        for t in existing:
            if t is not None:
                self._mark(t.untyped_storage())
        self.now = self.peak = 0

    def _mark(self, st: torch.UntypedStorage) -> bool:
        """Record ``st``; whether it is new."""
        ref = self.seen.get(id(st))
        if ref is not None and ref() is st:
            return False
        self.seen[id(st)] = weakref.ref(st)
        return True

    def _free(self, n: int) -> None:
        self.now -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if self._mark(st):
                    n = st.nbytes()
                    self.now += n
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(st, self._free, n)
        return out


def _plan(n_cells: int, n_bins: int, most: int, seed: int) -> BinPlan:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, most, (n_bins,), generator=gen)
    cells = torch.randint(0, n_cells, (int(counts.sum()),), generator=gen)
    return BinPlan.from_counts(cells, counts)


def test_live_bytes_counts_what_is_alive():
    """The meter itself: two 4 kB temporaries alive together, then one."""
    x = torch.zeros(1024)
    with LiveBytes(x) as meter:
        a = x + 1
        b = x + 2
        del a, b
        c = x * 3
        del c
    assert meter.peak == 2 * 4096 and meter.now == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("c", [3, 64, 300])
def test_torch_path_working_memory_is_within_the_budget(dtype, c, monkeypatch):
    """3000 bins of up to 40 cells, a 256 kB budget: the gathered cells (~58000 x C) are over
    twice the budget, and with 64 or 300 channels the output alone is larger; what the path
    holds beyond the output (forward) or the table's gradient (backward) stays within it."""
    budget = 256 << 10
    monkeypatch.setattr(bm, "_WORK_BYTES_CPU", budget)
    monkeypatch.setenv("JTSM_BINNEDMAX", "0")
    plan = _plan(500, 3000, 40, seed=c)
    gen = torch.Generator().manual_seed(c)
    table = torch.randn(500, c, generator=gen, dtype=dtype)
    scale = torch.rand(3000, generator=gen, dtype=dtype) + 0.5
    gout = torch.randn(3000, c, generator=gen, dtype=dtype)
    assert plan.cells.numel() * c * table.element_size() > 2 * budget
    with LiveBytes(table, plan.starts, plan.cells, scale) as fwd:
        out = bm._forward_impl(table, plan.starts, plan.cells, scale)
    with LiveBytes(table, plan.starts, plan.cells, scale, gout) as bwd:
        grad = bm._backward_impl(gout, table, plan.starts, plan.cells, scale)
    out_bytes = out.numel() * out.element_size()
    grad_bytes = grad.numel() * grad.element_size()
    assert fwd.peak - out_bytes <= budget, (fwd.peak, out_bytes)
    assert bwd.peak - grad_bytes <= budget, (bwd.peak, grad_bytes)
    # and the results are those of a whole-list reference (the C kernel or a loop)
    ref = torch.stack([table[plan.cells[plan.starts[b] : plan.starts[b + 1]]].amax(0)
                       if plan.starts[b + 1] > plan.starts[b] else table.new_zeros(c)
                       for b in range(plan.num_bins)]) * scale[:, None]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_chunk_sizes_are_bytes_not_rows():
    """The slices and chunks the path picks fit the budget for any channel count and dtype:
    float64 gets fewer rows than float32, and more channels fewer rows."""
    budget = 64 << 20
    for c in (1, 7, 256, 512, 2048, 1 << 20):
        for size in (2, 4, 8):
            for backward in (False, True):
                n = bm.slice_rows(c, size, budget, backward)
                per_elem = 2 * size + 9 if backward else size
                assert n * (c * per_elem + bm._INDEX_BYTES) <= budget or n == 1
            n = bm.chunk_bins(c, size, budget)
            assert n * (c * (size + 17) + bm._INDEX_BYTES) <= budget or n == 1
    assert bm.chunk_bins(256, 8, budget) < bm.chunk_bins(256, 4, budget)
    assert bm.slice_rows(512, 4, budget, False) < bm.slice_rows(256, 4, budget, False)
    assert bm.slice_rows(1 << 30, 4, budget, True) == 1  # a row above the budget: one at a time
    assert bm._work_bytes(torch.device("cuda")) == 64 << 20
    assert bm._work_bytes(torch.device("cpu")) == 16 << 20
