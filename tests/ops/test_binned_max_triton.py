"""The Triton kernel of the binned max (``jtsm.ops.binned_max_triton``) against the C kernel.

Without a GPU the kernel runs on CPU tensors in Triton's interpreter, which needs
``TRITON_INTERPRET=1`` before ``triton`` is first imported (``triton.jit`` reads it then, for
triton's own library too). So the tests not marked ``cuda`` run in a process of their own:
:func:`test_kernel_in_the_interpreter` starts pytest on this module with the variable set
and fails with that run's report; in the parent process they skip. To run them directly:
``TRITON_INTERPRET=1 pytest tests/ops/test_binned_max_triton.py``. The references are the C
kernel (float32, and bfloat16 tables upcast to float32) and the op's torch path (float64,
NaN). Tests marked ``cuda`` run the compiled kernel on a GPU against the torch path there.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ops_helpers import random_proposals

from jtsm.ops import binned_max as bm
from jtsm.ops import binned_max_triton as bt
from jtsm.ops.binned_max import BinPlan, binned_max

pytest.importorskip("triton")  # ships with torch's CUDA wheels
if os.environ.get("CI"):
    from jtsm.ops import _binnedmax  # noqa: F401  (CI builds it: a reference must not skip)
else:
    pytest.importorskip("jtsm.ops._binnedmax")

mp = importlib.import_module("jtsm.ops.moi_pool")  # the module (moi_pool is also a function)

GPU_TILE = bt.block_shape(torch.device("cuda"))  # the tile the GPU runs, many programs here
WIDE_TILE = (65536, 8)  # few programs: the interpreter's cost is per program and op


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
RUNNER = "test_kernel_in_the_interpreter"
COMPILER = "test_kernel_compiles_for_gpus"


@pytest.fixture(autouse=True)
def _in_the_interpreter(request):
    """The CPU tests run only where triton was imported under its interpreter; the runner
    and the compiler test only where it was not."""
    if request.node.get_closest_marker("cuda"):
        return
    if request.node.originalname in (RUNNER, COMPILER):
        if INTERPRETED:
            pytest.skip("needs triton imported without its interpreter")
        return
    if not INTERPRETED:
        pytest.skip(f"runs in Triton's interpreter, in the process {RUNNER} starts")


def test_kernel_in_the_interpreter():
    """This module's CPU tests, in a fresh pytest process with ``TRITON_INTERPRET=1``."""
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
           "not cuda and not slow", "-k", f"not {RUNNER} and not {COMPILER}",
           str(Path(__file__).relative_to(root))]
    res = subprocess.run(cmd, cwd=root, env={**os.environ, "TRITON_INTERPRET": "1"},
                         capture_output=True, text=True, timeout=900)
    report = (res.stdout + res.stderr)[-8000:]
    assert res.returncode == 0, report
    summary = res.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, report


@pytest.mark.parametrize("arch,dtype,forward,with_scale", [
    (90, "fp32", True, True), (90, "fp32", False, True), (90, "bf16", True, False),
    (90, "bf16", False, True), (90, "fp16", True, True), (90, "fp64", True, True),
    (90, "fp64", False, False), (80, "fp32", True, True), (80, "fp32", False, True),
])
def test_kernel_compiles_for_gpus(arch, dtype, forward, with_scale):
    """The compiled path, which the interpreter does not take, down to a cubin for sm_80 /
    sm_90 without a GPU: every variant the op launches types and lowers."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from jtsm.ops._binned_max_triton_kernel import binned_max_kernel

    acc = tl.float64 if dtype == "fp64" else tl.float32
    ptr, unused = f"*{dtype}", "*i64"
    sig = {"table": ptr, "starts": "*i64", "cells": "*i64",
           "scale": ptr if with_scale else unused, "out": ptr if forward else unused,
           "arg": "*i32" if forward else unused, "grad_out": unused if forward else ptr,
           "grad": unused if forward else f"*{'fp64' if dtype == 'fp64' else 'fp32'}",
           "num_bins": "i32", "num_cells": "i32", "C": "i32"}
    block_b, block_c = GPU_TILE
    const = {"HAS_SCALE": with_scale, "FORWARD": forward, "WRITE_ARG": forward, "ACC": acc,
             "BLOCK_B": block_b, "BLOCK_C": block_c}
    names = list(sig) + list(const)
    assert names == binned_max_kernel.arg_names  # the launch in binned_max_triton passes these
    sig.update(dict.fromkeys(const, "constexpr"))
    src = ASTSource(fn=binned_max_kernel, signature=sig,
                    constexprs={(names.index(n),): v for n, v in const.items()})
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
    assert compiled.asm["cubin"]
    assert ("atom.global" in compiled.asm["ptx"]) == (not forward)  # backward: atomic adds


def _random_plan(n_cells: int, n_bins: int, gen: torch.Generator, most: int = 7) -> BinPlan:
    """Bins of 0..most-1 random cells (repeats allowed)."""
    counts = torch.randint(0, most, (n_bins,), generator=gen)
    cells = torch.randint(0, n_cells, (int(counts.sum()),), generator=gen)
    return BinPlan.from_counts(cells, counts)


def _tied_table(n_cells: int, c: int, gen: torch.Generator) -> torch.Tensor:
    """Rounded ReLU features: many ties (and zeros), as after a ReLU."""
    return torch.relu(torch.randn(n_cells, c, generator=gen) * 2).round()


def _cpu_op(table, plan, scale, gout, kernel: str, monkeypatch):
    """Output and table gradient of the registered op on the CPU: ``kernel="1"`` the C
    kernel (float32 tables), ``"0"`` the torch path."""
    monkeypatch.setenv("JTSM_BINNEDMAX", kernel)
    t = table.clone().requires_grad_(True)
    out = binned_max(t, plan, scale)
    (g,) = torch.autograd.grad(out, t, gout)
    return out.detach(), g


def _ref_argmax(table: torch.Tensor, plan: BinPlan) -> torch.Tensor:
    """``(B, C)`` first cell holding each bin's max, -1 for an empty bin, by loops."""
    nb, c = plan.num_bins, table.shape[1]
    ref = torch.full((nb, c), -1, dtype=torch.int32)
    for b in range(nb):
        ids = plan.cells[plan.starts[b] : plan.starts[b + 1]]
        if ids.numel():
            first = (table[ids] == table[ids].max(0).values).int().argmax(0)
            ref[b] = ids[first].int()
    return ref


def _grad_from_argmax(arg: torch.Tensor, gout: torch.Tensor, scale, n_cells: int):
    """The table gradient an argmax routes ``(B, C)`` output gradients to (float64 sums)."""
    src = gout.double() * (1.0 if scale is None else scale.double()[:, None])
    keep = arg >= 0
    c = arg.shape[1]
    idx = (arg.long() * c + torch.arange(c))[keep]
    return torch.zeros(n_cells * c, dtype=torch.float64).index_add_(0, idx, src[keep]).view(-1, c)


@pytest.mark.parametrize("block", [None, GPU_TILE], ids=["cpu-tile", "gpu-tile"])
@pytest.mark.parametrize("with_scale", [False, True])
@pytest.mark.parametrize("seed", range(2))
def test_float32_equals_c_kernel(seed, with_scale, block, monkeypatch):
    """Values bit-equal to the C kernel, the argmax the first cell holding the max, and the
    gradient the C kernel's (sum order aside) and the one the argmax routes."""
    gen = torch.Generator().manual_seed(seed)
    n_cells, c, nb = 37, 19, 300  # 19 channels: a partial channel block in every tile
    table = _tied_table(n_cells, c, gen)
    plan = _random_plan(n_cells, nb, gen)
    scale = torch.rand(nb, generator=gen) + 0.5 if with_scale else None
    gout = torch.randn(nb, c, generator=gen)
    out, arg = bt.binned_max_forward(table, plan.starts, plan.cells, scale, True, block)
    grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells, scale, block)
    out_c, grad_c = _cpu_op(table, plan, scale, gout, "1", monkeypatch)
    assert torch.equal(out, out_c)
    assert torch.equal(arg, _ref_argmax(table, plan))
    torch.testing.assert_close(grad, grad_c, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad.double(), _grad_from_argmax(arg, gout, scale, n_cells),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("with_scale", [False, True])
def test_bfloat16_equals_c_kernel_on_the_upcast_table(with_scale, monkeypatch):
    """bfloat16: the max and its argmax are exact (compared as float32) and the scaling is
    done in float32, so the values are the C kernel's on the float32 copy, rounded to
    bfloat16; gradients (summed in float32, rounded once) within bfloat16's precision.

    The interpreter rounds float32 to bfloat16 by its own rule, not always to nearest even as
    a GPU does, so values may differ by one bfloat16 step here (exact on CUDA, see
    test_cuda_triton_equals_torch_path)."""
    gen = torch.Generator().manual_seed(7)
    n_cells, c, nb = 41, 23, 400
    table = torch.randn(n_cells, c, generator=gen).bfloat16()
    plan = _random_plan(n_cells, nb, gen)
    scale = (torch.rand(nb, generator=gen) + 0.5).bfloat16() if with_scale else None
    gout = torch.randn(nb, c, generator=gen).bfloat16()
    out, arg = bt.binned_max_forward(table, plan.starts, plan.cells, scale, True)
    grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells, scale)
    assert out.dtype == grad.dtype == torch.bfloat16
    up = None if scale is None else scale.float()
    out_c, grad_c = _cpu_op(table.float(), plan, up, gout.float(), "1", monkeypatch)
    if scale is None:  # the max of bfloat16 values needs no rounding
        assert torch.equal(out, out_c.bfloat16())
    torch.testing.assert_close(out.float(), out_c, rtol=2**-7, atol=0)  # one step
    assert torch.equal(arg, _ref_argmax(table.float(), plan))
    torch.testing.assert_close(grad.float(), grad_c, rtol=2**-8, atol=1e-6)
    assert grad.float().abs().sum() > 0


def test_float64_equals_torch_path(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    table = _tied_table(30, 17, gen).double()
    plan = _random_plan(30, 200, gen)
    scale = torch.rand(200, generator=gen, dtype=torch.float64) + 0.5
    gout = torch.randn(200, 17, generator=gen, dtype=torch.float64)
    out, _ = bt.binned_max_forward(table, plan.starts, plan.cells, scale)
    grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells, scale)
    out_t, grad_t = _cpu_op(table, plan, scale, gout, "0", monkeypatch)
    assert out.dtype == grad.dtype == torch.float64
    assert torch.equal(out, out_t)
    torch.testing.assert_close(grad, grad_t, rtol=1e-12, atol=1e-12)


def _proposal_plan(counts: list[list[int]], n_cells: int, gen: torch.Generator) -> BinPlan:
    """A plan of 7x7-bin proposals, ``counts[p]`` the cells of proposal ``p``'s 49 bins."""
    flat = torch.tensor([n for per in counts for n in per])
    cells = torch.randint(0, n_cells, (int(flat.sum()),), generator=gen)
    return BinPlan.from_counts(cells, flat)


def test_empty_proposal_and_one_cell_proposal(monkeypatch):
    """An empty proposal (all its bins empty) pools to 0 with no argmax and no gradient; a
    proposal of one cell has that cell's features in one bin and sends it all its gradient."""
    gen = torch.Generator().manual_seed(4)
    n_cells, c = 20, 21
    one = [0] * 49
    one[24] = 1  # the centre bin holds the single cell
    plan = _proposal_plan([[2] * 49, [0] * 49, one, [0] * 49], n_cells, gen)
    table = torch.randn(n_cells, c, generator=gen)
    scale = torch.rand(4 * 49, generator=gen) + 0.5
    gout = torch.randn(4 * 49, c, generator=gen)
    out, arg = bt.binned_max_forward(table, plan.starts, plan.cells, scale, True)
    grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells, scale)
    single, cell = 2 * 49 + 24, int(plan.cells[-1])
    empty = torch.ones(4 * 49, dtype=torch.bool)
    empty[:49] = False
    empty[single] = False
    assert torch.equal(out[empty], torch.zeros(int(empty.sum()), c))
    assert bool((arg[empty] == -1).all())
    assert torch.equal(out[single], table[cell] * scale[single])
    assert bool((arg[single] == cell).all())
    out_c, grad_c = _cpu_op(table, plan, scale, gout, "1", monkeypatch)
    assert torch.equal(out, out_c)
    torch.testing.assert_close(grad, grad_c, rtol=1e-6, atol=1e-6)
    # the single cell's gradient, alone: all of its bin's
    alone = bt.binned_max_backward(gout[single : single + 1], table, torch.tensor([0, 1]),
                                   plan.cells[-1:], scale[single : single + 1])
    expect = torch.zeros(n_cells, c)
    expect[cell] = gout[single] * scale[single]
    torch.testing.assert_close(alone, expect, rtol=0, atol=0)


def test_no_bins_no_cells_no_channels():
    table = torch.randn(5, 3)
    empty = torch.zeros(0, dtype=torch.int64)
    out, arg = bt.binned_max_forward(table, torch.zeros(1, dtype=torch.int64), empty, None, True)
    assert out.shape == arg.shape == (0, 3)
    starts = torch.zeros(4, dtype=torch.int64)  # 3 bins, none with cells
    out, arg = bt.binned_max_forward(table, starts, empty, None, True)
    assert torch.equal(out, torch.zeros(3, 3)) and bool((arg == -1).all())
    grad = bt.binned_max_backward(torch.ones(3, 3), table, starts, empty)
    assert torch.equal(grad, torch.zeros(5, 3))
    out, _ = bt.binned_max_forward(torch.zeros(5, 0), torch.tensor([0, 2]), torch.tensor([1, 2]))
    assert out.shape == (1, 0)


@pytest.mark.parametrize("c", [1, 16, 70, 130])
def test_channels_not_a_multiple_of_the_block(c, monkeypatch):
    """1, 70 and 130 channels leave a partial channel block (16 or 128 wide); 16 fills one."""
    gen = torch.Generator().manual_seed(c)
    table = _tied_table(25, c, gen)
    plan = _random_plan(25, 60, gen)
    gout = torch.randn(60, c, generator=gen)
    out_c, grad_c = _cpu_op(table, plan, None, gout, "1", monkeypatch)
    for block in (None, GPU_TILE):
        out, _ = bt.binned_max_forward(table, plan.starts, plan.cells, None, False, block)
        grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells, None, block)
        assert torch.equal(out, out_c), block
        torch.testing.assert_close(grad, grad_c, rtol=1e-6, atol=1e-6)


def test_many_proposals_on_a_small_map(monkeypatch):
    """4000 proposals (196000 bins) on a 12x10 map, through MoIPool's plan: the C kernel's
    values and gradient."""
    props = random_proposals(48, 40, n_sp=40, n_prop=4000, seed=3)
    hf, wf = 12, 10
    inc = mp.superpixel_cell_incidence(props.superpixels, props.num_superpixels, (hf, wf), 1 / 4)
    bins = mp.moi_bins(props, 1 / 4, 7, 7, hf, wf)
    plan, nonempty = mp._plan(props, inc, bins, wf, hf * wf)
    assert plan.num_bins == 4000 * 49 and bool((nonempty < 49).any())  # some empty bins
    gen = torch.Generator().manual_seed(3)
    c = 5
    table = torch.randn(hf * wf, c, generator=gen)
    scale = mp.compensation_factor(nonempty, 49, props.scores).float().repeat_interleave(49)
    gout = torch.randn(plan.num_bins, c, generator=gen)
    out, _ = bt.binned_max_forward(table, plan.starts, plan.cells, scale, False, WIDE_TILE)
    grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells, scale, WIDE_TILE)
    out_c, grad_c = _cpu_op(table, plan, scale, gout, "1", monkeypatch)
    assert torch.equal(out, out_c)
    torch.testing.assert_close(grad, grad_c, rtol=1e-5, atol=1e-4)  # float32 sums of ~1600


def test_nan_and_infinity_follow_the_torch_path(monkeypatch):
    """A NaN among a bin's cells makes that channel NaN with no gradient (the torch path's
    ``amax``); a bin of -inf values has max -inf at its first cell (the C kernel's rule)."""
    gen = torch.Generator().manual_seed(5)
    table = torch.randn(10, 4, generator=gen)
    table[3, 1] = float("nan")
    table[7] = float("-inf")
    cells = torch.cat([torch.tensor([7, 7, 7]), torch.randint(0, 10, (80,), generator=gen)])
    counts = torch.cat([torch.tensor([3]), torch.randint(0, 5, (30,), generator=gen)])
    counts[-1] += 83 - int(counts.sum())
    plan = BinPlan.from_counts(cells, counts)
    gout = torch.randn(31, 4, generator=gen)
    out, arg = bt.binned_max_forward(table, plan.starts, plan.cells, None, True)
    grad = bt.binned_max_backward(gout, table, plan.starts, plan.cells)
    out_t, grad_t = _cpu_op(table, plan, None, gout, "0", monkeypatch)
    assert bool(out_t.isnan().any()) and torch.equal(out.isnan(), out_t.isnan())
    assert torch.equal(out.nan_to_num(), out_t.nan_to_num())
    assert bool((arg[out.isnan()] == -1).all())
    assert torch.equal(out[0], torch.full((4,), float("-inf"))) and bool((arg[0] == 7).all())
    torch.testing.assert_close(grad, grad_t)


def test_cells_outside_the_table_are_skipped():
    """The kernel reads no row outside the table: such a cell counts as absent."""
    table = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    plan = BinPlan(torch.tensor([0, 3, 4]), torch.tensor([0, 5, 1, -1]))
    out, arg = bt.binned_max_forward(table, plan.starts, plan.cells, None, True)
    assert torch.equal(out, torch.tensor([[3.0, -2.0], [0.0, 0.0]]))
    assert torch.equal(arg, torch.tensor([[1, 0], [-1, -1]], dtype=torch.int32))


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    """Outside the interpreter a CPU tensor is refused with a message, not a crash."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA tensors"):
        bt.binned_max_forward(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([0]))


# ---------------------------------------------------------------------------------------------
# the registered op on the Triton kernels (CPU tensors in the interpreter, routed as on CUDA)


def _route_op_to_triton(monkeypatch) -> dict[str, int]:
    """Route the op's CPU calls to the Triton kernels, as its CUDA calls are routed; returns
    the count of kernel calls."""
    calls = {"forward": 0, "backward": 0}
    fwd, bwd = bt.binned_max_forward, bt.binned_max_backward

    def counted_fwd(*a, **k):
        calls["forward"] += 1
        return fwd(*a, **k)

    def counted_bwd(*a, **k):
        calls["backward"] += 1
        return bwd(*a, **k)

    monkeypatch.setattr(bm, "_use_kernel", lambda table, scale: False)
    monkeypatch.setattr(bm, "_use_triton", lambda table, scale: table.dtype in bm._TRITON_DTYPES)
    monkeypatch.setattr(bt, "binned_max_forward", counted_fwd)
    monkeypatch.setattr(bt, "binned_max_backward", counted_bwd)
    return calls


def test_op_opcheck_and_gradcheck_on_the_kernels(monkeypatch):
    calls = _route_op_to_triton(monkeypatch)
    gen = torch.Generator().manual_seed(0)
    plan = _random_plan(12, 25, gen)
    table = torch.randn(12, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    scale = torch.rand(25, dtype=torch.float64, generator=gen) + 0.5
    torch.library.opcheck(bm._binned_max_op, (table, plan.starts, plan.cells, scale))
    assert torch.autograd.gradcheck(lambda t: binned_max(t, plan, scale), (table,),
                                    fast_mode=True)  # few calls: the interpreter is slow
    assert calls["forward"] > 0 and calls["backward"] > 0


def test_moi_pool_on_the_kernels_equals_c_kernel(monkeypatch):
    props = random_proposals(48, 40, n_sp=40, n_prop=80, seed=3)
    gen = torch.Generator().manual_seed(3)
    feat = torch.relu(torch.randn(1, 24, 12, 10, generator=gen))
    gout = torch.randn(80, 24, 7, 7, generator=gen)
    res = []
    for use_triton in (False, True):  # the C kernel, then the Triton kernels
        calls = _route_op_to_triton(monkeypatch) if use_triton else None
        f = feat.clone().requires_grad_(True)
        out = mp.moi_pool(f, props, 7, 1 / 4)
        res.append((out.detach(), torch.autograd.grad(out, f, gout)[0]))
    assert calls == {"forward": 1, "backward": 1}
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-5, atol=1e-5)


def test_compiled_op_on_the_kernels_is_one_graph(monkeypatch):
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(3)
    plan = _random_plan(16, 40, gen)
    table = _tied_table(16, 4, gen)
    gout = torch.randn(40, 4, generator=gen)
    out_c, grad_c = _cpu_op(table, plan, None, gout, "1", monkeypatch)
    calls = _route_op_to_triton(monkeypatch)
    f = torch.compile(lambda t, s, c: bm._binned_max_op(t, s, c, None), backend="aot_eager",
                      fullgraph=True)
    t = table.clone().requires_grad_(True)
    out = f(t, plan.starts, plan.cells)
    (g,) = torch.autograd.grad(out, t, gout)
    assert calls["forward"] > 0 and calls["backward"] > 0
    assert torch.equal(out.detach(), out_c)
    torch.testing.assert_close(g, grad_c, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# CUDA (run with `pytest -m cuda` on a machine with a GPU): the compiled kernels

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cuda_triton_equals_torch_path(dtype, monkeypatch):
    """The op on CUDA: the Triton kernel against the torch path (on the float32 copy for
    bfloat16, whose max is exact and whose scaling runs in float32 in both)."""
    gen = torch.Generator().manual_seed(1)
    n_cells, c, nb = 300, 200, 5000  # 200 channels: a partial second block of 128
    table = torch.randn(n_cells, c, generator=gen).round().to(dtype).cuda()
    plan = _random_plan(n_cells, nb, gen, most=30)
    plan = BinPlan(plan.starts.cuda(), plan.cells.cuda())
    scale = (torch.rand(nb, generator=gen) + 0.5).to(dtype).cuda()
    gout = torch.randn(nb, c, generator=gen).to(dtype).cuda()
    res = []
    for env in ("1", "0"):  # the Triton kernel, then the torch path
        monkeypatch.setenv("JTSM_BINNEDMAX", env)
        assert bm._use_triton(table, scale) == (env == "1")
        ref = dtype if env == "1" else (torch.float32 if dtype == torch.bfloat16 else dtype)
        t = table.to(ref).requires_grad_(True)
        out = binned_max(t, plan, scale.to(ref))
        res.append((out.detach(), torch.autograd.grad(out, t, gout.to(ref))[0]))
    assert res[0][0].dtype == res[0][1].dtype == dtype
    assert torch.equal(res[0][0], res[1][0].to(dtype))
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(res[0][1].double(), res[1][1].double(), rtol=tol, atol=tol)
    monkeypatch.setenv("JTSM_BINNEDMAX", "1")
    _, arg = bt.binned_max_forward(table, plan.starts, plan.cells, scale, True)
    cpu_plan = BinPlan(plan.starts.cpu(), plan.cells.cpu())
    assert torch.equal(arg.cpu(), _ref_argmax(table.cpu().double(), cpu_plan))


@pytest.mark.cuda
@cuda
def test_cuda_binned_max_memory_flat_in_proposals(monkeypatch):
    """Forward + backward of the op over MoIPool's plan at VOC-like shapes (a 75x100 map, 256
    channels): beyond the output, its gradient and the table's gradient, the Triton kernel
    allocates next to nothing and the torch path stays within its byte budget, at 100 and at
    4000 proposals alike."""
    hf, wf, c = 75, 100, 256
    table = torch.randn(hf * wf, c, device="cuda")
    work: dict[str, list[int]] = {"1": [], "0": []}
    for n_prop in (100, 4000):
        props = random_proposals(300, 400, n_sp=200, n_prop=n_prop, seed=7).to("cuda")
        inc = mp.superpixel_cell_incidence(props.superpixels, props.num_superpixels, (hf, wf),
                                           1 / 4)
        bins = mp.moi_bins(props, 1 / 4, 7, 7, hf, wf)
        plan, _ = mp._plan(props, inc, bins, wf, hf * wf)
        for env in ("1", "0"):
            monkeypatch.setenv("JTSM_BINNEDMAX", env)
            t = table.clone().requires_grad_(True)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            out = binned_max(t, plan)
            (g,) = torch.autograd.grad(out, t, torch.ones_like(out))
            torch.cuda.synchronize()
            size = out.numel() * out.element_size()
            work[env].append(torch.cuda.max_memory_allocated() - base - 2 * size
                             - g.numel() * g.element_size())
            del out, t, g
    assert max(work["1"]) < 1 << 20, work  # a few index vectors at most
    assert max(work["0"]) < bm._WORK_BYTES_GPU + (16 << 20), work
    assert work["1"][1] <= 2 * work["1"][0] + (1 << 20), work
