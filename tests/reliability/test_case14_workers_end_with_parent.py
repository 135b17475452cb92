"""Case 14: SIGTERM to ``jtsm proposals --workers 2`` (or ``relabel``) ended the parent only;
its workers, reparented to PID 1, stayed forever, blocked on the pool's pipe. Now both stages
run one pool (:mod:`jtsm.worker_pool`): SIGTERM ends the workers with the parent (exit 143,
the command that continues printed), every worker also dies with its parent however the parent
ends (``PR_SET_PDEATHSIG``), the files finished so far stay whole, and a rerun completes the
store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the process tree from /proc")


def _children(pid: int) -> set[int]:
    """Live children of ``pid`` (any thread's), from /proc."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(cond, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


class _Jtsm:
    """``jtsm *args`` in a process of its own, its stderr in a file (a pipe would stay open as
    long as any orphaned worker holds it)."""

    def __init__(self, tmp: Path, *args: object) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                              os.environ.get("PYTHONPATH", "")])}
        self.log = tmp / f"stderr-{time.monotonic_ns()}.txt"
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "jtsm_cli", *map(str, args)],
                                         env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.pid = self.proc.pid

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return code, self.log.read_text()


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synth images of 128x128 (a few seconds of selective search or GrabCut on 2
    workers) with their ground truth."""
    from jtsm.data.synth import SynthConfig, write_synth_dataset

    root = tmp_path_factory.mktemp("many")
    write_synth_dataset(root, 40, 0, SynthConfig(height=128, width=128), seed=3)
    return root


@pytest.fixture()
def many_images(many: Path) -> Path:
    return many / "images"


def _terminate_mid_run(tmp: Path, args: list[object], out: Path, pattern: str
                       ) -> tuple[set[int], str, int]:
    """Start ``jtsm *args``, wait for its 2 workers and a first finished file, SIGTERM the
    parent; returns the workers' pids, its stderr and its exit code."""
    run = _Jtsm(tmp, *args)
    try:
        assert _wait_for(lambda: len(_children(run.pid)) >= 2 or run.proc.poll() is not None,
                         60)
        workers = _children(run.pid)
        assert _wait_for(lambda: next(out.rglob(pattern), None) is not None
                         or run.proc.poll() is not None, 60)
        assert run.proc.poll() is None, "finished before it could be interrupted"
        run.proc.send_signal(signal.SIGTERM)
    finally:
        code, err = run.wait(30)
    return workers, err, code


def _end(pids: set[int]) -> list[int]:
    """The pids still running, which are then killed (so that a failing run leaves none)."""
    alive = [p for p in pids if _alive(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    return alive


def test_sigterm_ends_the_proposal_workers_and_a_rerun_completes(many_images, tmp_path):
    out = tmp_path / "props"
    args = ["proposals", "--images", many_images, "--out", out, "--workers", 2,
            "--method", "selective-search", "--max", 200, "-q"]
    workers, err, code = _terminate_mid_run(tmp_path, args, out, "*.npz")
    assert len(workers) >= 2
    _wait_for(lambda: not any(_alive(p) for p in workers), 5)
    assert not _end(workers), "workers still running after their parent ended"
    assert code == 143, err
    assert "Terminated." in err and "jtsm proposals" in err and "Traceback" not in err
    done = len(list(out.glob("*.npz")))
    assert 0 < done < 40
    assert not list(out.glob(".*.tmp"))  # no half-written file
    code, err = _Jtsm(tmp_path, *args).wait(300)
    assert code == 0, err
    assert len(list(out.glob("*.npz"))) == 40


def test_a_killed_parent_takes_its_workers_along(many_images, tmp_path):
    """SIGKILL cannot be handled: the workers go because they asked to die with their parent."""
    out = tmp_path / "props"
    run = _Jtsm(tmp_path, "proposals", "--images", many_images, "--out", out, "--workers", 2,
                "--method", "selective-search", "--max", 200, "-q")
    try:
        assert _wait_for(lambda: len(_children(run.pid)) >= 2 or run.proc.poll() is not None,
                         60)
        workers = _children(run.pid)
        assert len(workers) >= 2 and run.proc.poll() is None
        time.sleep(0.5)  # the workers are past their set-up
        run.proc.kill()
    finally:
        run.wait(30)
    _wait_for(lambda: not any(_alive(p) for p in workers), 5)
    assert not _end(workers), "workers still running after their parent was killed"


def test_sigterm_ends_the_relabel_workers(many, tmp_path):
    """Relabel of a run whose mined segments are the 40 images' ground truth."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(many / "annotations/panoptic_train", run / "mined/panoptic")
    shutil.copy(many / "annotations/panoptic_train.json", run / "mined/panoptic.json")
    (run / "meta.json").write_text(json.dumps({"stage": "mine", "run_id": "r1"}))
    out = tmp_path / "pseudo"
    args = ["relabel", "--run", run, "--images", many / "images", "--out", out,
            "--workers", 2, "--evidence", "grabcut", "-q"]
    workers, err, code = _terminate_mid_run(tmp_path, args, out / "panoptic", "*.png")
    assert len(workers) >= 2
    _wait_for(lambda: not any(_alive(p) for p in workers), 5)
    assert not _end(workers), "workers still running after their parent ended"
    assert code == 143, err
    assert "Terminated." in err and "jtsm relabel" in err and "Traceback" not in err
    assert 0 < len(list((out / "parts").glob("*.json"))) < 40
    assert not (out / "panoptic.json").exists()
    code, err = _Jtsm(tmp_path, *args).wait(300)
    assert code == 0, err
    assert len(json.loads((out / "panoptic.json").read_text())["annotations"]) == 40
