"""The Triton kernel of the binned max; imported on first use by :mod:`jtsm.ops.binned_max_triton`
(which documents it), so that jtsm imports where ``triton`` is not installed.

``triton.jit`` decides at import whether kernels run compiled or in Triton's interpreter
(``TRITON_INTERPRET=1``, CPU tensors), for this module and for triton's own library
functions alike: set the variable before ``triton`` is first imported.

One program takes a tile of ``BLOCK_B`` consecutive bins x ``BLOCK_C`` channels. Pointers:
``table`` ``(N_cells, C)``, ``starts`` ``(B + 1,)`` and ``cells`` ``(E,)`` int64, ``scale``
``(B,)`` (read if ``HAS_SCALE``); forward (``FORWARD``): ``out`` ``(B, C)`` and, if
``WRITE_ARG``, ``arg`` ``(B, C)`` int32; backward: ``grad_out`` ``(B, C)`` read, ``grad``
``(N_cells, C)`` of dtype ``ACC`` added into. ``ACC`` is what values are compared, scaled
and summed in: float32, float64 for float64 tables. Unused pointers are not read.
"""

import triton
import triton.language as tl


@triton.jit
def binned_max_kernel(
    table, starts, cells, scale, out, arg, grad_out, grad, num_bins, num_cells, C,
    HAS_SCALE: tl.constexpr, FORWARD: tl.constexpr, WRITE_ARG: tl.constexpr,
    ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    b_ok = b < num_bins
    c_ok = ch < C
    e0 = tl.load(starts + b, mask=b_ok, other=0)
    cnt = tl.load(starts + b + 1, mask=b_ok, other=0) - e0
    best = tl.full([BLOCK_B, BLOCK_C], float("-inf"), ACC)
    best_cell = tl.full([BLOCK_B, BLOCK_C], -1, tl.int32)
    for k in range(0, tl.max(cnt, 0)):
        cell = tl.load(cells + e0 + k, mask=k < cnt, other=-1)
        live = (cell >= 0) & (cell < num_cells)
        # a missing row reads -inf, which never wins; strictly greater keeps the first
        # cell holding the max, and a NaN takes over for good (nothing beats it). Half
        # types compare as float32, exactly.
        read = live[:, None] & c_ok[None, :]
        row = tl.load(table + (cell * C)[:, None] + ch[None, :], mask=read)
        row = tl.where(read, row.to(ACC), float("-inf"))
        take = (row > best) | (row != row)
        best = tl.where(take, row, best)
        best_cell = tl.where(take, cell.to(tl.int32)[:, None], best_cell)
    # a bin whose cells all hold -inf: its max is -inf, at its first cell
    first = tl.load(cells + e0, mask=cnt > 0, other=-1)
    first_ok = (first >= 0) & (first < num_cells)
    best_cell = tl.where((best_cell < 0) & first_ok[:, None], first.to(tl.int32)[:, None],
                         best_cell)
    nan = best != best
    found = best_cell >= 0
    tile_ok = b_ok[:, None] & c_ok[None, :]
    val = tl.where(found, best, 0.0)  # an empty bin is 0 (zeroed before -inf meets a scale)
    if HAS_SCALE:
        f = tl.load(scale + b, mask=b_ok).to(ACC)
    else:
        f = tl.full([BLOCK_B], 1, ACC)
    at = b[:, None] * C + ch[None, :]
    if FORWARD:
        res = tl.where(nan, float("nan"), val * f[:, None])
        tl.store(out + at, res.to(out.dtype.element_ty), mask=tile_ok)
        if WRITE_ARG:
            tl.store(arg + at, tl.where(nan, -1, best_cell), mask=tile_ok)
    else:
        g = tl.load(grad_out + at, mask=tile_ok).to(ACC) * f[:, None]
        dst = grad + best_cell.to(tl.int64) * C + ch[None, :]
        tl.atomic_add(dst, g.to(grad.dtype.element_ty), mask=tile_ok & found & ~nan,
                      sem="relaxed")

