"""kill -9 during `jtsm mine`, then --resume: the same final weights as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from jtsm.rundir.checkpoint import load_checkpoint

SETS = ["solver.max_iter=120", "solver.ims_per_batch=1", "solver.checkpoint_period=10",
        "solver.warmup_iters=5", "solver.steps=[100]", "mining.fc_dim=32",
        "mining.oicr_heads=2", "input.train_scales=[64,80]", "input.test_scales=[64]",
        "input.max_proposals=100"]


def _cmd(synth_dir, proposals, out, *extra, sets=()):
    args = [sys.executable, "-m", "jtsm_cli", "mine",
            "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
            "--images", str(synth_dir / "images"), "--proposals", str(proposals),
            "--out", str(out), "--quiet", *extra]
    for s in [*SETS, *sets]:
        args += ["--set", s]
    return args


def test_kill_9_then_resume_is_bit_identical(tmp_path, synth_dir, synth_proposals):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cmd(synth_dir, synth_proposals, ref), check=True, env=env, timeout=600)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(synth_dir, synth_proposals, out), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "checkpoints/last_mine"
    deadline = time.time() + 300
    while not marker.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model_final.pt").exists()
    # every file left behind is complete: checkpoints load, no temp names remain in use
    for ck in (out / "checkpoints").glob("*.pt"):
        load_checkpoint(ck)
    subprocess.run(_cmd(synth_dir, synth_proposals, out, "--resume"), check=True, env=env,
                   timeout=600)
    a = load_checkpoint(ref / "model_final.pt")
    b = load_checkpoint(out / "model_final.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            out.append(int(d))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_launcher_takes_its_workers_down(tmp_path, synth_dir, synth_proposals):
    """``--nproc 2``: kill -9 of ``jtsm mine`` leaves no orphan worker training on (and
    writing checkpoints into the run a later --resume would share with it). Started as a
    shell starts a background job, with SIGINT ignored: torch's own parent-death signal is
    SIGINT, which such workers inherit ignored and train on (seen with ``nohup ... &``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    args = _cmd(synth_dir, synth_proposals, out, "--nproc", "2",
                sets=["solver.ims_per_batch=2", "solver.max_iter=100000"])
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    marker = out / "checkpoints/last_mine"
    deadline = time.time() + 300
    while not marker.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None and marker.is_file()
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leave them running past the test either way
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their launcher"
