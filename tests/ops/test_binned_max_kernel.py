"""The C kernel of the binned max (``jtsm.ops._binnedmax``) against the torch path and a loop.

The kernel runs for float32 CPU tables; ``JTSM_BINNEDMAX=0`` selects the torch path, which is
the reference here (its own reference is the per-bin loop of test_moi_pool.py).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ops_helpers import random_proposals

from jtsm.ops import binned_max as bm
from jtsm.ops.binned_max import BinPlan, binned_max
from jtsm.ops.moi_pool import moi_pool

if os.environ.get("CI"):
    # CI builds with a compiler: a kernel that failed to build must fail here, not skip.
    from jtsm.ops import _binnedmax  # noqa: F401
else:  # an install without a C compiler uses the torch path; these tests do not apply
    pytest.importorskip("jtsm.ops._binnedmax")


def _random_plan(n_cells: int, n_bins: int, gen: torch.Generator) -> BinPlan:
    """Bins of 0..6 random cells (repeats allowed)."""
    counts = torch.randint(0, 7, (n_bins,), generator=gen)
    cells = torch.randint(0, n_cells, (int(counts.sum()),), generator=gen)
    return BinPlan.from_counts(cells, counts)


def _both(table: torch.Tensor, plan: BinPlan, scale, gout, monkeypatch):
    results = []
    for env in ("1", "0"):
        monkeypatch.setenv("JTSM_BINNEDMAX", env)
        t = table.clone().requires_grad_(True)
        out = binned_max(t, plan, scale)
        (g,) = torch.autograd.grad(out, t, gout)
        results.append((out.detach(), g))
    return results


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_scale", [False, True])
def test_kernel_equals_torch_path(seed, with_scale, monkeypatch):
    gen = torch.Generator().manual_seed(seed)
    n_cells, c, n_bins = 37, 19, 300
    # rounded ReLU features: many ties, as after a ReLU
    table = torch.relu(torch.randn(n_cells, c, generator=gen) * 2).round()
    plan = _random_plan(n_cells, n_bins, gen)
    scale = torch.rand(n_bins, generator=gen) + 0.5 if with_scale else None
    gout = torch.randn(n_bins, c, generator=gen)
    (out_k, g_k), (out_t, g_t) = _both(table, plan, scale, gout, monkeypatch)
    assert torch.equal(out_k, out_t)  # the max is exact
    torch.testing.assert_close(g_k, g_t, rtol=1e-6, atol=1e-6)  # only the sum order differs


def test_kernel_gradient_goes_to_first_max_cell(monkeypatch):
    monkeypatch.setenv("JTSM_BINNEDMAX", "1")
    table = torch.tensor([[1.0, 5.0], [3.0, 5.0], [3.0, 2.0]], requires_grad=True)
    # bin 0: cells 2, 1, 0 (channel 0: cells 2 and 1 tie at 3 -> cell 2; channel 1: 1 and 0
    # tie at 5 -> cell 1); bin 1: empty
    plan = BinPlan.from_counts(torch.tensor([2, 1, 0]), torch.tensor([3, 0]))
    out = binned_max(table, plan, torch.tensor([2.0, 7.0]))
    assert torch.equal(out.detach(), torch.tensor([[6.0, 10.0], [0.0, 0.0]]))
    out.backward(torch.ones_like(out))
    assert torch.equal(table.grad, torch.tensor([[0.0, 0.0], [0.0, 2.0], [2.0, 0.0]]))


def test_table_with_nan_takes_the_torch_path(monkeypatch):
    """A NaN makes the torch path's max NaN (and its gradient 0); the kernel is not used."""
    gen = torch.Generator().manual_seed(5)
    table = torch.randn(10, 4, generator=gen)
    table[3, 1] = float("nan")
    plan = _random_plan(10, 40, gen)
    gout = torch.randn(40, 4, generator=gen)
    (out_k, g_k), (out_t, g_t) = _both(table, plan, None, gout, monkeypatch)
    assert torch.equal(out_k.isnan(), out_t.isnan()) and bool(out_t.isnan().any())
    assert torch.equal(out_k.nan_to_num(), out_t.nan_to_num())
    torch.testing.assert_close(g_k, g_t)


@pytest.mark.parametrize("mode", ["code", "paper", "none"])
def test_moi_pool_through_the_kernel_equals_torch_path(mode, monkeypatch):
    props = random_proposals(48, 40, n_sp=40, n_prop=80, seed=3)
    gen = torch.Generator().manual_seed(3)
    feat = torch.relu(torch.randn(1, 24, 12, 10, generator=gen))
    gout = torch.randn(80, 24, 7, 7, generator=gen)
    res = []
    for env in ("1", "0"):
        monkeypatch.setenv("JTSM_BINNEDMAX", env)
        f = feat.clone().requires_grad_(True)
        out = moi_pool(f, props, 7, 1 / 4, compensation_mode=mode)
        res.append((out.detach(), torch.autograd.grad(out, f, gout)[0]))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-4, atol=1e-4)  # float32 sums


def test_kernel_is_used_for_float32_cpu_only(monkeypatch):
    monkeypatch.setenv("JTSM_BINNEDMAX", "1")
    assert bm._use_kernel(torch.zeros(3, 2), None)
    assert not bm._use_kernel(torch.zeros(3, 2, dtype=torch.float64), None)
    monkeypatch.setenv("JTSM_BINNEDMAX", "0")
    assert not bm._use_kernel(torch.zeros(3, 2), None)


def test_kernel_rejects_a_plan_outside_the_table():
    from jtsm.ops import _binnedmax

    table = np.zeros((4, 2), np.float32)
    out = np.zeros((1, 2), np.float32)
    with pytest.raises(IndexError):
        _binnedmax.forward(table, 2, np.array([0, 1], np.int64), np.array([4], np.int64), None,
                           out)
    with pytest.raises(ValueError):
        _binnedmax.forward(table, 2, np.array([0, 2], np.int64), np.array([0], np.int64), None,
                           out)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("stride,ph,pw", [(4, 7, 7), (8, 3, 5), (3, 2, 2)])
def test_kernel_plan_equals_torch_plan(seed, stride, ph, pw):
    """MoIPool's plan from the C builder: the same bins, cells (in order) and non-empty counts
    as the torch builder."""
    from jtsm.ops.moi_pool import _kernel_plan, _plan, moi_bins, superpixel_cell_incidence

    props = random_proposals(45, 38, n_sp=35, n_prop=70, seed=seed)
    hf, wf = -(-45 // stride), -(-38 // stride)
    inc = superpixel_cell_incidence(props.superpixels, props.num_superpixels, (hf, wf),
                                    1 / stride)
    bins = moi_bins(props, 1 / stride, ph, pw, hf, wf)
    kplan, kne = _kernel_plan(props, inc, bins, wf, hf * wf)
    tplan, tne = _plan(props, inc, bins, wf, hf * wf)
    assert torch.equal(kne, tne)
    assert torch.equal(kplan.starts, tplan.starts) and torch.equal(kplan.cells, tplan.cells)
    assert kplan.cells.numel() > 0


def test_kernel_plan_rejects_bad_superpixel_ids():
    from jtsm.ops import _binnedmax

    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    args = [i64(0, 1), i64(5), i64(0, 1), i64(0), i64(0), i64(1), i64(0), i64(1)]
    with pytest.raises(IndexError):
        _binnedmax.moi_plan(*args, 1, 1, 1, 1, np.zeros(2, np.int64), np.zeros(1, np.int64),
                            np.zeros(1, np.int64), np.zeros(1, np.int64))
