"""The process pool of proposals and relabel: results, worker counts, a worker that dies."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from jtsm.errors import JtsmError
from jtsm.worker_pool import run_pool, worker_count


def _square(x: int) -> int:
    return x * x


def _dies_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # killed, out of memory: no exception reaches the pool
    return x


_STATE: dict[str, int] = {}


def _set_offset(offset: int) -> None:
    _STATE["offset"] = offset


def _plus_offset(x: int) -> int:
    return x + _STATE["offset"]


def test_every_task_once_and_the_initializer_runs_in_each_worker():
    assert sorted(run_pool(_square, list(range(20)), 2)) == [x * x for x in range(20)]
    assert sorted(run_pool(_plus_offset, [1, 2, 3], 2, _set_offset, (10,))) == [11, 12, 13]


def test_worker_count_uses_the_cores_this_process_may_use(monkeypatch):
    import jtsm.worker_pool as wp

    monkeypatch.setattr(wp, "available_cores", lambda: 3)
    assert worker_count(None, 10) == 3  # not os.cpu_count()
    assert worker_count(0, 10) == 3
    assert worker_count(8, 5) == 5  # never more than the tasks
    assert worker_count(4, 0) == 1


def test_a_dead_worker_names_the_tasks_in_flight():
    with pytest.raises(JtsmError, match=r"worker process died .* while testing one of: .*task 3"):
        list(run_pool(_dies_on_three, list(range(8)), 2, name=lambda t: f"task {t}",
                      doing="testing"))


def _dies(image, fg, box, bg=None, **_):  # noqa: ANN001, ANN202 - an evidence method
    os._exit(1)


def test_relabel_names_the_images_when_a_worker_dies(tmp_path: Path):
    """relabel's pool raised a bare BrokenProcessPool; it now shares proposals' helper."""
    from types import SimpleNamespace

    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.engine.relabel import run_relabel
    from jtsm.hookspecs import hookimpl
    from jtsm.plugins import EvidenceMethod, get_plugin_manager

    @hookimpl
    def register_evidence(register):  # noqa: ANN001, ANN202
        register(EvidenceMethod("dies", _dies))

    get_plugin_manager().register(SimpleNamespace(register_evidence=register_evidence),
                                  name="test-evidence-dies")
    write_synth_dataset(tmp_path / "d", 4, 0, SynthConfig(height=48, width=48), seed=1)
    run = tmp_path / "run"
    shutil.copytree(tmp_path / "d/annotations/panoptic_train", run / "mined/panoptic")
    shutil.copy(tmp_path / "d/annotations/panoptic_train.json", run / "mined/panoptic.json")
    (run / "meta.json").write_text(json.dumps({"stage": "mine", "run_id": "r"}))
    with pytest.raises(JtsmError, match=r"worker process died .*relabelling one of: "
                                        r".*train_00000\d\.jpg"):
        run_relabel(run, tmp_path / "d/images", tmp_path / "out", evidence="dies", workers=2)


_HELD = threading.Lock()


def _take_the_lock() -> None:
    with _HELD:
        pass


def test_workers_start_while_the_parent_holds_a_lock():
    """A forked worker copies every lock of the parent in the state it is in, and one held at
    that moment (OpenCV's thread-pool lock, after the parent drew images with it) is never
    released in the worker: it waited forever. Workers are fresh interpreters."""
    results: list[int] = []
    _HELD.acquire()
    try:
        t = threading.Thread(target=lambda: results.extend(
            run_pool(_square, [1, 2, 3], 2, _take_the_lock)), daemon=True)
        t.start()
        t.join(120)
        assert not t.is_alive(), "the workers wait on a lock the parent held when they started"
    finally:
        _HELD.release()
    assert sorted(results) == [1, 4, 9]


def test_no_process_pool_of_jtsm_forks():
    """Every process pool in the package starts fresh interpreters: a fork copies the locks
    other threads hold (the hang of test_workers_start_while_the_parent_holds_a_lock, which
    OpenCV's thread pool caused in the proposal and PQ pools alike)."""
    import re

    root = Path(__file__).resolve().parents[1]
    calls = []
    for path in [*(root / "jtsm").rglob("*.py"), *(root / "plugins").rglob("*.py")]:
        text = path.read_text()
        for m in re.finditer(r"ProcessPoolExecutor\((.*?)\)\s*$", text, re.S | re.M):
            calls.append((path.name, m.group(1)))
        assert "multiprocessing.Pool(" not in text and "mp.Pool(" not in text, path
    assert len(calls) >= 2
    for name, args in calls:
        assert "mp_context=" in args, name
    src = (root / "jtsm/worker_pool.py").read_text() + (root / "jtsm/evaluation/panoptic.py"
                                                         ).read_text()
    assert "fork" not in re.findall(r'get_context\("(\w+)"\)', src)
    assert re.findall(r'get_context\("(\w+)"\)', src) == ["spawn", "spawn"]
