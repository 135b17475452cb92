"""Case 21: two commands into one out folder ran side by side: two predicts shared
``.OUT.partial`` and the folder ended with one run's json beside the other's PNGs; two mines
wrote one run's checkpoints over the other's. Now a writing command holds ``.OUT.lock`` beside
its folder (pid, process start time, command line): the second refuses at once with one line
naming the holder, the first's files untouched; a lock whose process is gone, or whose pid now
belongs to another process, is stale and taken over."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import TINY, jtsm, tree

from jtsm.rundir.layout import lock_path
from jtsm.rundir.lock import FolderLocked, folder_lock, process_start_time

_HOLD = ("import sys, time\n"
         "from jtsm.rundir.lock import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(120)\n")


@pytest.fixture
def holder():
    """Start a process that holds the lock of a folder; yields a function taking the folder."""
    procs = []

    def hold(folder):
        p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def test_a_second_predict_into_a_held_folder_is_refused(tmp_path, rel_data, rel_run, holder):
    one = tmp_path / "one.jpg"
    shutil.copy(rel_data / "images/val_000000.jpg", one)
    out = tmp_path / "pred"
    code, text = jtsm("predict", "--run", rel_run, "--images", one, "--out", out, "-q")
    assert code == 0, text
    assert not lock_path(out).exists()  # released at the end
    before = tree(out)
    p = holder(out)
    code, text = jtsm("predict", "--run", rel_run, "--images", one, "--out", out, "-q",
                      "--overwrite")
    assert code == 1
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {out}: another jtsm command is "
                                                   f"writing it (pid {p.pid}, since ")
    assert tree(out) == before


def test_a_second_mine_into_a_held_run_is_refused_before_anything(tmp_path, rel_data, holder):
    run = tmp_path / "run"
    p = holder(run)
    args = ["mine", "--dataset", rel_data / "annotations/panoptic_train.json", "--images",
            rel_data / "images", "--proposals", rel_data / "props", "--out", run, "-q"]
    for kv in TINY:
        args += ["--set", kv]
    code, text = jtsm(*args)
    assert code == 1 and f"pid {p.pid}" in text and "Traceback" not in text
    assert not run.exists() or not any(run.iterdir())
    p.kill()
    p.wait()
    code, text = jtsm(*args)  # its process gone, the lock is stale and taken over
    assert code == 0, text
    assert (run / "model_final.pt").is_file() and not lock_path(run).exists()


def test_stale_locks_are_taken_over(tmp_path):
    out = tmp_path / "out"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock_path(out).write_text(json.dumps({"pid": gone.pid, "started": 1.0, "since": 0}))
    with folder_lock(out) as path:
        assert json.loads(path.read_text())["pid"] != gone.pid
    assert not path.exists()
    lock_path(out).write_text("")  # a holder killed while writing its lock file
    with folder_lock(out):
        pass


def test_a_reused_pid_is_not_a_holder(tmp_path, holder):
    """A lock naming a live pid with another start time was left by a process that is gone
    (the pid now belongs to another one)."""
    other = holder(tmp_path / "elsewhere")
    started = process_start_time(other.pid)
    assert started is not None
    out = tmp_path / "out"
    lock_path(out).write_text(json.dumps({"pid": other.pid, "started": started + 50.0}))
    with folder_lock(out):
        pass
    lock_path(out).write_text(json.dumps({"pid": other.pid, "started": started}))
    with pytest.raises(FolderLocked, match=f"pid {other.pid}"):
        with folder_lock(out):
            pass
    assert lock_path(out).is_file()  # another's lock is never removed
