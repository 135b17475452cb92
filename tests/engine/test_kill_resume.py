"""kill -9 during `jtsm mine`, then --resume: the same final weights as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import torch

from jtsm.engine.checkpoint import load_checkpoint

SETS = ["solver.max_iter=120", "solver.ims_per_batch=1", "solver.checkpoint_period=10",
        "solver.warmup_iters=5", "solver.steps=[100]", "mining.fc_dim=32",
        "mining.refine_heads=2", "input.train_scales=[64,80]", "input.test_scales=[64]",
        "input.max_proposals=100"]


def _cmd(synth_dir, proposals, out, *extra):
    args = [sys.executable, "-m", "jtsm_cli", "mine",
            "--dataset", str(synth_dir / "annotations/panoptic_train.json"),
            "--images", str(synth_dir / "images"), "--proposals", str(proposals),
            "--out", str(out), "--quiet", *extra]
    for s in SETS:
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
