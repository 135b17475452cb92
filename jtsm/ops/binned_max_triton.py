"""The binned max of :mod:`jtsm.ops.binned_max` as a Triton kernel: the op's CUDA implementation.

Same contract as the op (see :mod:`jtsm.ops.binned_max`): ``table`` ``(N_cells, C)``, a CSR
plan ``starts`` ``(B + 1,)`` / ``cells`` ``(E,)`` int64, an optional ``(B,)`` factor per bin.
Output bin ``b`` is the channel-wise max over rows ``cells[starts[b]:starts[b + 1]]`` times
``scale[b]``; an empty bin gives 0; a NaN among a bin's cells makes that channel NaN (as the
torch path's ``amax``). The argmax of a channel is the first cell, in the bin's cell order,
holding the max (RoIPool's routing); an empty bin or a NaN max has none (-1) and gets no
gradient.

One kernel serves both directions. A program takes a tile of ``BLOCK_B`` consecutive bins x
``BLOCK_C`` channels and walks the bins' cell lists side by side (as many steps as the
tile's largest bin has cells), keeping the running max and its cell in registers. Values are
compared and scaled in float32 (float64 for float64 tables): exact for the max of half
types, which are rounded once, on the way out.

- Forward writes the ``(B, C)`` output and, when asked, the ``(B, C)`` int32 argmax cells.
- Backward recomputes the argmax the same way and adds ``grad_out * scale`` into the argmax
  cells of the ``(N_cells, C)`` table gradient with atomic adds (into a float32 buffer,
  float64 for float64 tables). The op does not keep the forward's argmax: that would hold
  output-sized memory between the passes, which the op never does; the backward reads the
  table once more instead. Atomics make the order of a cell's sum, and so its last bits,
  vary from run to run, as torch's ``index_add_`` on CUDA does.

Nothing is gathered into memory: the only tensors are the inputs, the output and the table's
gradient, whatever the number of bins, cells or channels; and nothing is copied to the host.

Cells outside ``[0, N_cells)`` are skipped (the plan comes from :mod:`jtsm.ops.moi_pool`, which
builds it inside the map; the CPU kernel checks it). Cell ids must fit in int32.

``triton`` is imported on first use (it ships with torch's CUDA wheels); the kernel lives in
:mod:`jtsm.ops._binned_max_triton_kernel`. With ``TRITON_INTERPRET=1`` in the environment
before ``triton`` is first imported, the kernel runs on CPU tensors in Triton's interpreter,
which is how the tests check it without a GPU (in a process of their own).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import torch
from torch import Tensor

__all__ = ["available", "binned_max_forward", "binned_max_backward", "block_shape"]

# a tile of bins x channels per program: on a GPU a few bins (their gathers in flight
# together) of 128 channels; in the interpreter (CPU tensors) wide tiles, since it runs the
# programs one after another in Python
_GPU_BLOCK_B, _GPU_BLOCK_C = 8, 128
_CPU_BLOCK_B, _CPU_BLOCK_C = 4096, 16


@functools.cache
def available() -> bool:
    """Whether ``triton`` imports (it comes with torch's CUDA builds)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _kernel() -> Any:
    """The jitted kernel (imports ``triton``)."""
    from jtsm.ops._binned_max_triton_kernel import binned_max_kernel

    return binned_max_kernel


def block_shape(device: torch.device) -> tuple[int, int]:
    """``(BLOCK_B, BLOCK_C)``: the tile of bins x channels one program takes on ``device``."""
    if device.type == "cpu":
        return _CPU_BLOCK_B, _CPU_BLOCK_C
    return _GPU_BLOCK_B, _GPU_BLOCK_C


def _launch(table: Tensor, starts: Tensor, cells: Tensor, scale: Tensor | None, *,
            out: Tensor | None = None, arg: Tensor | None = None,
            grad_out: Tensor | None = None, grad: Tensor | None = None,
            block: tuple[int, int] | None = None) -> None:
    n_cells, c = table.shape
    nb = starts.shape[0] - 1
    if n_cells >= 2**31:
        raise ValueError(f"binned_max: {n_cells} table rows; the Triton kernel takes < 2**31")
    if not table.is_cuda and not _interpret():
        raise ValueError("binned_max: the Triton kernel takes CUDA tensors (CPU tensors only in "
                         "Triton's interpreter, TRITON_INTERPRET=1)")
    if nb <= 0 or c == 0:
        return
    block_b, block_c = block or block_shape(table.device)
    block_b = min(block_b, 1 << (nb - 1).bit_length())  # no wider than the bins
    block_c = min(block_c, max(16, 1 << (c - 1).bit_length()))
    grid = ((nb + block_b - 1) // block_b, (c + block_c - 1) // block_c)
    dummy = starts  # an unused pointer argument (its branch is compiled out)
    kernel = _kernel()
    import triton.language as tl

    with torch.cuda.device(table.device) if table.is_cuda else contextlib.nullcontext():
        kernel[grid](
            table, starts, cells, dummy if scale is None else scale,
            dummy if out is None else out, dummy if arg is None else arg,
            dummy if grad_out is None else grad_out, dummy if grad is None else grad,
            nb, n_cells, c,
            HAS_SCALE=scale is not None, FORWARD=grad is None, WRITE_ARG=arg is not None,
            ACC=tl.float64 if table.dtype == torch.float64 else tl.float32,
            BLOCK_B=block_b, BLOCK_C=block_c,
            num_warps=4 if block_b * block_c >= 512 else 1,
        )


def _prepared(table: Tensor, starts: Tensor, cells: Tensor,
              scale: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    return (table.contiguous(), starts.contiguous(), cells.contiguous(),
            None if scale is None else scale.contiguous())


def binned_max_forward(table: Tensor, starts: Tensor, cells: Tensor, scale: Tensor | None = None,
                       with_argmax: bool = False, block: tuple[int, int] | None = None
                       ) -> tuple[Tensor, Tensor | None]:
    """The binned max ``(B, C)`` (``table``'s dtype) and, if asked, its ``(B, C)`` int32
    argmax cells (-1: an empty bin or a NaN max).

    Arguments:
        table: ``(N_cells, C)``; starts: ``(B + 1,)``; cells: ``(E,)`` int64; scale: ``(B,)``
            or None; block: the ``(BLOCK_B, BLOCK_C)`` tile (default :func:`block_shape`).
    """
    table, starts, cells, scale = _prepared(table, starts, cells, scale)
    nb, c = starts.shape[0] - 1, table.shape[1]
    out = table.new_empty(nb, c)
    arg = torch.empty((nb, c), dtype=torch.int32, device=table.device) if with_argmax else None
    _launch(table, starts, cells, scale, out=out, arg=arg, block=block)
    return out, arg


def binned_max_backward(grad_out: Tensor, table: Tensor, starts: Tensor, cells: Tensor,
                        scale: Tensor | None = None, block: tuple[int, int] | None = None
                        ) -> Tensor:
    """The table's gradient ``(N_cells, C)`` (``table``'s dtype): each ``(B, C)`` output
    gradient, times the bin's factor, added into the bin's argmax cell."""
    table, starts, cells, scale = _prepared(table, starts, cells, scale)
    acc = torch.float64 if table.dtype == torch.float64 else torch.float32
    grad = torch.zeros(table.shape, dtype=acc, device=table.device)
    _launch(table, starts, cells, scale, grad_out=grad_out.contiguous(), grad=grad, block=block)
    return grad.to(table.dtype)
