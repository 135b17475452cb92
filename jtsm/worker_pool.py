"""The process pool of the stages that fan out over images (``jtsm proposals``, ``jtsm relabel``).

One helper, so that both behave alike:

- **how many**: ``--workers``, or every core this process may use
  (:func:`jtsm.system.available_cores`, its CPU affinity), never more than the tasks;
- **a worker dies with its parent**: on Linux each worker asks for SIGKILL when the process that
  started it ends (``PR_SET_PDEATHSIG``), so a ``jtsm`` killed by any signal, even SIGKILL, never
  leaves workers blocked on the pool's pipe; workers ignore SIGINT (Ctrl-C reaches the whole
  process group; the parent decides);
- **SIGTERM and Ctrl-C end the pool**: while the pool runs, SIGTERM raises
  :class:`jtsm.errors.Terminated` in the parent (Ctrl-C raises ``KeyboardInterrupt``); on that or
  any other exception the workers are ended at once. Every task writes its own files atomically,
  so what was finished stays on disk and a rerun continues;
- **a worker that dies** (killed, out of memory) raises :class:`jtsm.errors.JtsmError` naming the
  tasks in flight, instead of a ``BrokenProcessPool`` or a hang.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from jtsm.errors import JtsmError, Terminated
from jtsm.system import available_cores

__all__ = ["die_with_parent", "run_pool", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")

#: Seconds a worker is given to end after SIGTERM before it is killed.
_STOP_SECONDS = 5.0


def worker_count(workers: int | None, tasks: int) -> int:
    """Processes for ``tasks`` tasks: ``workers`` (``None`` or 0: every core this process may
    use), at least 1 and at most ``tasks``."""
    n = workers or available_cores()
    return max(1, min(n, tasks))


def die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGKILL when the one that started it (``parent``) ends, however
    it ends. A parent that died before this took effect ends this process at once. Elsewhere a
    no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _start_worker(parent: int, initializer: Callable[..., None] | None,
                  initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the default, whatever the parent set
    if initializer is not None:
        initializer(*initargs)


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread for the block (elsewhere: as is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _stop(ex: Any) -> None:
    """End the pool's workers now (SIGTERM, then SIGKILL after :data:`_STOP_SECONDS`)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(_STOP_SECONDS)
        if p.is_alive():
            p.kill()
            p.join()
    ex.shutdown(wait=False, cancel_futures=True)


def run_pool(fn: Callable[[T], R], tasks: Sequence[T], workers: int,
             initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (),
             name: Callable[[T], str] = str, doing: str = "working on") -> Iterator[R]:
    """``fn(task)`` for every task in ``workers`` processes, at most ``2 * workers`` in flight;
    yields the results as they finish (not in task order). ``initializer(*initargs)`` runs
    once in each worker. See the module docstring for signals and dead workers.

    Raises:
        JtsmError: a worker died; the message names the tasks in flight (``name(task)``) and
            what they were doing (``doing``, e.g. "making proposals for").
        Terminated: SIGTERM reached this process while the pool ran.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # fresh interpreters, not forks: a fork copies locks other threads of this process hold
    # (OpenCV's thread pool after the parent drew images with it), and a worker then waits
    # on one forever
    ctx = mp.get_context("spawn")
    pending = iter(tasks)
    finished_all = False
    with _sigterm_raises():
        ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                                 initargs=(os.getpid(), initializer, initargs))
        try:
            running = {ex.submit(fn, t): t for t in itertools.islice(pending, 2 * workers)}
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = running.pop(fut)
                    try:
                        result = fut.result()
                        for nxt in itertools.islice(pending, 1):  # submit raises too once a
                            running[ex.submit(fn, nxt)] = nxt     # worker has died
                    except BrokenProcessPool:
                        suspects = ", ".join(name(t) for t in [task, *running.values()])
                        raise JtsmError(
                            f"a worker process died (out of memory?) while {doing} one of: "
                            f"{suspects}; rerun to continue, or use fewer --workers") from None
                    yield result
            finished_all = True
        finally:
            if finished_all:
                ex.shutdown(wait=True)
            else:  # an error, an interrupt, or the consumer stopped early
                _stop(ex)
