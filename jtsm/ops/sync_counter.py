"""Host synchronisations of a CUDA step, counted on any device (the CPU included).

On a GPU, the host waits for the device whenever a value computed there is read on the host
(``.item()``, ``float()``, ``bool()``, ``.tolist()``, a copy to the CPU), when an
op's output size depends on the data (``nonzero``, ``masked_select``, ``unique``, a boolean
mask as an index, ``repeat_interleave`` without ``output_size``, ``bincount``), and on a
blocking copy between host and device (``.to(device)`` without ``non_blocking=True``,
``torch.tensor(data, device=...)``, ``new_tensor``). ``torch.cuda.set_sync_debug_mode``
reports them on a GPU only. :class:`HostSyncCounter` counts the same operations through
torch's dispatch and function modes, so a test on a CPU-only machine sees them too.

On the CPU it *simulates* a GPU step: every tensor is taken to live on the device, except
inside :func:`on_host` blocks, which mark work done by design on host tensors (built by the
loader, or by the host before they are copied to the device): there, on a GPU, nothing waits
for the device. On a CUDA device it counts only the operations that touch a CUDA tensor.

Not seen: what runs inside one registered op (``jtsm::binned_max``: its Triton kernel on CUDA
waits for nothing, its torch path's backward once), explicit ``torch.cuda.synchronize()`` and
collectives (``torch.distributed``).
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["HostSyncCounter", "SyncEvent", "SYNC_OPS", "on_host"]

#: aten ops that wait for the device whatever their arguments: a value read on the host or an
#: output whose size depends on the data
SYNC_OPS = frozenset({
    "aten::_local_scalar_dense",  # item(), float(), int(), bool(), is_nonzero
    "aten::nonzero",  # also torch.where(cond), argwhere, a bool mask as an index (below)
    "aten::masked_select",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::unique_dim_consecutive",
    "aten::equal",
    "aten::bincount",  # CUDA reads the input's max for the output size
})
# Tensor methods that copy a tensor's values to the host (``.numpy()`` takes host tensors
# only: the copy before it, ``.cpu()``, is what waits)
_READS = frozenset({"tolist"})
_MOVES = frozenset({"to", "cuda", "cpu"})
_FROM_DATA = frozenset({"tensor", "as_tensor", "new_tensor"})

_state = threading.local()


@contextmanager
def on_host() -> Iterator[None]:
    """Mark a block whose tensor work is done on host tensors by design (no device to wait
    for on a GPU): :class:`HostSyncCounter` leaves it out when it simulates a GPU step on the
    CPU. On a CUDA device the counter still counts any operation of the block that touches a
    CUDA tensor, so a block marked wrongly shows there."""
    _state.host = getattr(_state, "host", 0) + 1
    try:
        yield
    finally:
        _state.host -= 1


def _in_host_block() -> bool:
    return getattr(_state, "host", 0) > 0


@dataclass(frozen=True)
class SyncEvent:
    """One counted operation: ``op`` (an aten op or a tensor method) and ``where``
    (``file:line`` of the innermost caller outside torch)."""

    op: str
    where: str


_TORCH_DIR = os.path.dirname(torch.__file__)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        if not frame.filename.startswith(_TORCH_DIR) and frame.filename != __file__:
            name = frame.filename  # relative to the checkout jtsm is in, when inside it
            if name.startswith(_ROOT + os.sep):
                name = name[len(_ROOT) + 1:]
            return f"{name}:{frame.lineno}"
    return "?"


def _tensors(args: Any, kwargs: Any) -> list[torch.Tensor]:
    flat, _ = tree_flatten((args, kwargs or {}))
    return [t for t in flat if isinstance(t, torch.Tensor)]


def _is_bool_index(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


class HostSyncCounter:
    """Count the host synchronisations a block of tensor work makes (see the module).

    ``device`` is the device the work runs on: ``"cpu"`` simulates a GPU step (every tensor
    outside :func:`on_host` blocks counts as on the device), a CUDA device counts what touches
    CUDA tensors. Use as a context manager; the events are in :attr:`events` (op and caller),
    their number in :attr:`count`. Only the entering thread is watched (loader threads are
    not).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.simulate = torch.device(device).type == "cpu"
        self.events: list[SyncEvent] = []
        self._modes: list[Any] = []

    @property
    def count(self) -> int:
        return len(self.events)

    def summary(self) -> str:
        """The events, one per line, with how often each occurred."""
        seen: dict[SyncEvent, int] = {}
        for e in self.events:
            seen[e] = seen.get(e, 0) + 1
        return "\n".join(f"{n} x {e.op} at {e.where}" for e, n in seen.items())

    def _on_device(self, tensors: list[torch.Tensor]) -> bool:
        """Whether ``tensors`` hold one that lives on the device of the step."""
        if self.simulate:
            return bool(tensors) and not _in_host_block()
        return any(t.device.type == "cuda" for t in tensors)

    def _add(self, op: str) -> None:
        self.events.append(SyncEvent(op, _caller()))

    # aten level ------------------------------------------------------------------------------

    def _op_syncs(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        name = func._schema.name
        if name in SYNC_OPS:
            return True
        if name == "aten::repeat_interleave":  # the output size is the repeats' sum
            return kwargs.get("output_size") is None and isinstance(
                args[0 if func._overloadname == "Tensor" else 1], torch.Tensor)
        if name in ("aten::index", "aten::index_put", "aten::index_put_",
                    "aten::_index_put_impl_"):
            masks = [i for i in args[1] if _is_bool_index(i)]
            if not masks:
                return False
            if name != "aten::index":  # one mask and a host scalar: a masked_fill, no sync
                value = args[2]
                accumulate = (args[3] if len(args) > 3 else kwargs.get("accumulate", False))
                scalar = value.numel() == 1 and (self.simulate or value.device.type == "cpu")
                return not (len(args[1]) == 1 and scalar and not accumulate)
            return True
        if name == "aten::histc":  # the range read from the data
            lo = args[2] if len(args) > 2 else kwargs.get("min", 0)
            hi = args[3] if len(args) > 3 else kwargs.get("max", 0)
            return lo == hi
        return False

    def _dispatch(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._op_syncs(func, args, kwargs) and self._on_device(_tensors(args, kwargs)):
            self._add(str(func._schema.name).removeprefix("aten::"))

    # tensor-method level ---------------------------------------------------------------------

    def _function(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        name = getattr(func, "__name__", "")
        if name in _READS and args and isinstance(args[0], torch.Tensor):
            if self._on_device([args[0]]):
                self._add(name)
        elif name in _MOVES and args and isinstance(args[0], torch.Tensor):
            if self._blocking_move(name, args[0], args[1:], kwargs):
                self._add(name)
        elif name in _FROM_DATA:
            if self._from_data(name, args, kwargs):
                self._add(name)

    def _blocking_move(self, name: str, src: torch.Tensor, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> bool:
        """Whether ``src.to(...)`` / ``.cuda()`` / ``.cpu()`` is a blocking host-device copy."""
        if name == "to":
            if args and isinstance(args[0], torch.Tensor):
                device, blocking = args[0].device, not (args[1:2] or [kwargs.get(
                    "non_blocking", False)])[0]
            else:
                device, _, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
                blocking = not non_blocking
            if device is None:
                return False  # a dtype change
        else:
            device = torch.device("cpu") if name == "cpu" else torch.device("cuda")
            blocking = name == "cpu" or not (args[1] if len(args) > 1 else
                                             kwargs.get("non_blocking", False))
        if self.simulate:  # the tensor lives on the device unless marked: any move crosses
            return blocking and not _in_host_block()
        return blocking and (src.device.type == "cuda") != (device.type == "cuda")

    def _from_data(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether ``torch.tensor`` / ``as_tensor`` / ``new_tensor`` copy Python data to the
        device (blocking)."""
        if name == "new_tensor":  # on the device of the tensor it is called on
            device = kwargs.get("device", args[0].device if args else None)
        else:
            device = kwargs.get("device")
            data = args[0] if args else kwargs.get("data")
            if device is None or isinstance(data, torch.Tensor):
                return False
        if self.simulate:
            return not _in_host_block()
        return torch.device(device).type == "cuda"

    # modes -----------------------------------------------------------------------------------

    def __enter__(self) -> HostSyncCounter:
        counter = self

        class _Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                kwargs = kwargs or {}
                counter._function(func, args, kwargs)
                return func(*args, **kwargs)

        class _Ops(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                kwargs = kwargs or {}
                counter._dispatch(func, args, kwargs)
                return func(*args, **kwargs)

        self._modes = [_Functions(), _Ops()]
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)
        self._modes = []
