"""Inputs loaded ahead of the loop that uses them, on background threads.

The trainer asks for the items of iteration ``it``, slots ``j`` in order. Each item is a pure
function of ``(index, seed(it, j))`` (see :mod:`jtsm.engine.trainer`), so loading it early, on
another thread, gives the same item: prefetching changes when an item is read, not what it
holds. The scoring passes over the training images (mined outputs, presence calibration) read
images and proposals the same way. Decoding PNGs, resizing and the proposals' masks run in
OpenCV, NumPy and pycocotools, which release the GIL, so a loader thread overlaps them with the
model's work.

For a model on a GPU the loader does more of the host's work: several threads (an item at
training size takes tens of milliseconds to resize and jitter), the proposals' tensors built
and every tensor of an item pinned (:mod:`jtsm.data.mining_dataset`), so that the step's
copies to the device do not block (:mod:`jtsm.ops.transfer`). On a CPU none of that changes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import torch

from jtsm.system import available_cores

__all__ = ["GPU_LOAD_THREADS", "Prefetcher", "loader_threads"]

#: at most this many loader threads per GPU process when ``solver.load_threads`` is -1
GPU_LOAD_THREADS = 4

K = TypeVar("K")
V = TypeVar("V")
_END = object()


def loader_threads(threads: int, device: torch.device) -> int:
    """``solver.load_threads`` for a model on ``device``: ``-1`` (the default) is, on a GPU,
    whose step leaves the CPU free to load, one thread per core this process has beside its
    own (its share of the machine's cores when ``LOCAL_WORLD_SIZE`` / ``WORLD_SIZE``
    processes share them), at least 1 and at most :data:`GPU_LOAD_THREADS`; on a CPU 0, where
    the step's own threads already use every core (a loader thread there made steps slower,
    warm-up 1.08x and MIL 1.03-1.07x on 2 cores, ``benchmarks/bench_data_loading.py``)."""
    if threads >= 0:
        return threads
    if device.type != "cuda":
        return 0
    local = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or "1"
    share = available_cores() // max(1, int(local) if local.isdigit() else 1)
    return max(1, min(GPU_LOAD_THREADS, share - 1))


class Prefetcher(Generic[K, V]):
    """Iterates ``fn(key)`` for each key of ``keys``, in order; with ``threads > 0`` up to
    ``ahead`` of them (at least one per thread, so that every thread has work) are computed
    before they are asked for (``threads=0``: each when asked).

    An error of ``fn`` is raised when its key's result is asked for, as a plain loop would
    raise it. Use as a context manager: leaving it cancels what is queued and joins the threads.
    """

    def __init__(self, fn: Callable[[K], V], keys: Iterable[K], threads: int = 1,
                 ahead: int = 2) -> None:
        self._fn = fn
        self._keys: Iterator[K] = iter(keys)
        self._pool = ThreadPoolExecutor(threads, "jtsm-load") if threads > 0 else None
        self._pending: deque[Future[V]] = deque()
        if self._pool is not None:
            for _ in range(max(1, ahead, threads)):
                self._submit()

    def _submit(self) -> None:
        key = next(self._keys, _END)
        if key is not _END and self._pool is not None:
            self._pending.append(self._pool.submit(self._fn, key))

    def __iter__(self) -> Prefetcher[K, V]:
        return self

    def __next__(self) -> V:
        if self._pool is None:
            return self._fn(next(self._keys))
        if not self._pending:
            raise StopIteration
        future = self._pending.popleft()
        self._submit()
        return future.result()

    def close(self) -> None:
        """Cancel the queued calls and join the threads (a running call finishes first)."""
        if self._pool is not None:
            for f in self._pending:
                f.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Prefetcher[K, V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
