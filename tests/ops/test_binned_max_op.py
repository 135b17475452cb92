"""``jtsm::binned_max`` as a ``torch.library`` op: opcheck, ``torch.compile``, and (marked
``cuda``) the CUDA paths of MoIPool, RoIPool and RoIAlign against the CPU."""

from __future__ import annotations

import pytest
import torch
from ops_helpers import random_proposals

from jtsm.ops.binned_max import BinPlan, _binned_max_op, binned_max
from jtsm.ops.moi_pool import moi_pool
from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool


def _plan(n_cells: int, n_bins: int, seed: int) -> BinPlan:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 6, (n_bins,), generator=gen)
    cells = torch.randint(0, n_cells, (int(counts.sum()),), generator=gen)
    return BinPlan.from_counts(cells, counts)


@pytest.mark.parametrize("kernel", ["1", "0"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_scale", [False, True])
def test_opcheck(kernel, dtype, with_scale, monkeypatch):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch agree with
    the real op, on the C kernel and on the torch path."""
    monkeypatch.setenv("JTSM_BINNEDMAX", kernel)
    plan = _plan(20, 30, 0)
    table = torch.randn(20, 5, dtype=dtype, requires_grad=True)
    scale = torch.rand(30, dtype=dtype) + 0.5 if with_scale else None
    torch.library.opcheck(_binned_max_op, (table, plan.starts, plan.cells, scale))


def test_gradcheck_through_the_op():
    plan = _plan(12, 25, 1)
    table = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(25, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda t: binned_max(t, plan, scale), (table,))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_over_moi_pool_matches(backend):
    torch._dynamo.reset()
    props = random_proposals(40, 48, n_sp=20, n_prop=15, seed=2)
    feat = torch.randn(1, 8, 10, 12, requires_grad=True)
    gout = torch.randn(15, 8, 7, 7)
    ref = moi_pool(feat, props, 7, 1 / 4)
    (gref,) = torch.autograd.grad(ref, feat, gout)
    compiled = torch.compile(moi_pool, backend=backend)
    out = compiled(feat, props, 7, 1 / 4)
    (g,) = torch.autograd.grad(out, feat, gout)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(g, gref, rtol=1e-6, atol=1e-6)


def test_compiled_op_alone_is_one_graph():
    """The op traces as one node: ``fullgraph=True`` compiles it without a graph break."""
    torch._dynamo.reset()
    plan = _plan(16, 40, 3)
    table = torch.randn(16, 4, requires_grad=True)
    f = torch.compile(lambda t, s, c: _binned_max_op(t, s, c, None), backend="aot_eager",
                      fullgraph=True)
    out = f(table, plan.starts, plan.cells)
    ref = binned_max(table, plan)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    gout = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, table, gout)[0],
                               torch.autograd.grad(ref, table, gout)[0])


# ---------------------------------------------------------------------------------------------
# CUDA (run with `pytest -m cuda` on a machine with a GPU)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _cpu_and_cuda(fn, feat: torch.Tensor, gout: torch.Tensor):
    res = []
    for dev in ("cpu", "cuda"):
        f = feat.to(dev).requires_grad_(True)
        out = fn(f, dev)
        (g,) = torch.autograd.grad(out, f, gout.to(dev))
        res.append((out.detach().cpu(), g.cpu()))
    return res


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["code", "none"])
def test_cuda_moi_pool_equals_cpu(dtype, mode):
    props = random_proposals(90, 120, n_sp=60, n_prop=200, seed=4)
    gen = torch.Generator().manual_seed(4)
    feat = torch.relu(torch.randn(1, 32, 12, 15, generator=gen, dtype=dtype))
    gout = torch.randn(200, 32, 7, 7, generator=gen, dtype=dtype)
    (o_c, g_c), (o_g, g_g) = _cpu_and_cuda(
        lambda f, dev: moi_pool(f, props.to(dev), 7, 1 / 8, mode), feat, gout)
    torch.testing.assert_close(o_g, o_c, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_g, g_c, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@cuda
def test_cuda_opcheck_and_compile():
    plan = _plan(20, 30, 0)
    table = torch.randn(20, 5, device="cuda", requires_grad=True)
    scale = torch.rand(30, device="cuda") + 0.5
    torch.library.opcheck(_binned_max_op, (table, plan.starts.cuda(), plan.cells.cuda(), scale))
    torch._dynamo.reset()
    props = random_proposals(40, 48, n_sp=20, n_prop=15, seed=2).to("cuda")
    feat = torch.randn(1, 8, 10, 12, device="cuda", requires_grad=True)
    ref = moi_pool(feat, props, 7, 1 / 4)
    out = torch.compile(moi_pool, backend="aot_eager")(feat, props, 7, 1 / 4)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_cuda_roi_ops_equal_cpu(op):
    gen = torch.Generator().manual_seed(5)
    feat = torch.randn(2, 16, 12, 15, generator=gen)
    xy = torch.rand(50, 2, generator=gen) * 90
    boxes = torch.cat([torch.randint(0, 2, (50, 1), generator=gen).float(), xy,
                       xy + 4 + torch.rand(50, 2, generator=gen) * 60], 1)
    gout = torch.randn(50, 16, 7, 7, generator=gen)
    fn = {"roi_pool": lambda f, dev: roi_pool(f, boxes.to(dev), 7, 1 / 8),
          "roi_align": lambda f, dev: roi_align(f, boxes.to(dev), 7, 1 / 8, 2, True)}[op]
    (o_c, g_c), (o_g, g_g) = _cpu_and_cuda(fn, feat, gout)
    torch.testing.assert_close(o_g, o_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_g, g_c, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@cuda
def test_cuda_moi_pool_host_syncs_do_not_grow_with_proposals():
    """The number of host synchronisations per image is a constant, not one per proposal."""
    import warnings

    counts = []
    for n_prop in (20, 400):
        props = random_proposals(90, 120, n_sp=60, n_prop=n_prop, seed=6).to("cuda")
        feat = torch.randn(1, 16, 12, 15, device="cuda", requires_grad=True)
        moi_pool(feat, props, 7, 1 / 8).sum().backward()  # warm-up (allocator, kernels)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                moi_pool(feat, props, 7, 1 / 8).sum().backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[0] == counts[1] and counts[0] <= 8, counts


@pytest.mark.cuda
@cuda
def test_cuda_moi_pool_memory_flat_in_proposals():
    """Peak memory beyond the output and its gradient (which any pooling pays) grows by far
    less than the output when the proposals grow 8x: gathers and the backward's argmax work
    in fixed-size slices and chunks."""
    work, out_bytes = [], []
    for n_prop in (100, 800):
        props = random_proposals(90, 120, n_sp=60, n_prop=n_prop, seed=7).to("cuda")
        feat = torch.randn(1, 256, 12, 15, device="cuda", requires_grad=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = moi_pool(feat, props, 7, 1 / 8)
        out.backward(torch.ones_like(out))
        torch.cuda.synchronize()
        size = out.numel() * out.element_size()
        work.append(torch.cuda.max_memory_allocated() - base - 2 * size)
        out_bytes.append(size)
        del out
    assert work[1] - work[0] < 0.25 * (out_bytes[1] - out_bytes[0]), (work, out_bytes)


def test_cuda_marker_is_registered():
    """``pytest -m cuda`` selects the tests above; the marker is declared in pyproject."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[2]
    markers = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]["markers"]
    assert any(m.startswith("cuda:") for m in markers)
