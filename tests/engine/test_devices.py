"""Devices: ``--device`` on every stage, checkpoints across devices, and the CUDA checks.

The CUDA tests (``-m cuda``) run where a GPU is (``benchmarks/gpu_check.sh``); elsewhere they
are skipped, and the CPU tests here check all that a CPU can.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.engine.device import resolve_device
from jtsm.engine.mine import run_mine
from jtsm.engine.runs import load_run
from jtsm.errors import ConfigError
from jtsm_cli.main import cli

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TINY = ["solver.max_iter=3", "solver.warmup_iters=1", "solver.steps=[2]", "mining.fc_dim=16",
        "mining.refine_heads=1", "input.train_scales=[64]", "input.test_scales=[64]",
        "input.max_proposals=60", "proposals=felzenszwalb"]


def test_device_names_resolve_or_are_refused_by_name(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU ") == torch.device("cpu")
    for bad, msg in (("tpu", "--device tpu: unknown device"),
                     ("mps", "--device mps: unsupported device type")):
        with pytest.raises(ConfigError, match=msg):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    with pytest.raises(ConfigError, match="--device cuda:1: no CUDA device is available"):
        resolve_device("cuda:1")


def test_a_cuda_rank_of_a_group_takes_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="only 2 CUDA device"):
        resolve_device("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # gloo ranks stay on the CPU


def _as_if_saved_on_cuda(src: Path, dst: Path) -> None:
    """Rewrite a torch checkpoint so that its storages say they were saved from ``cuda:0``
    (what ``torch.save`` of a GPU model writes), byte for byte otherwise."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
                assert old in data
                data = data.replace(old, new)
            zout.writestr(info, data)


def test_a_run_trained_on_a_gpu_loads_on_the_cpu(tmp_path, synth_dir, synth_proposals):
    """``model_final.pt`` whose tensors were on ``cuda:0`` loads onto a CPU-only machine (it
    would not without ``map_location``), with the same weights."""
    run = tmp_path / "run"
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, run, write_outputs=False, device="cpu")
    final = run / "model_final.pt"
    cpu_state = torch.load(final, weights_only=True)
    _as_if_saved_on_cuda(final, tmp_path / "gpu.pt")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    (tmp_path / "gpu.pt").replace(final)
    loaded = load_run(run, "cpu")
    state = loaded.model.state_dict()
    assert all(v.device.type == "cpu" for v in state.values())
    assert all(torch.equal(state[k], cpu_state[k]) for k in cpu_state)


def test_every_stage_runs_with_device_cpu_given(tmp_path, synth_dir, synth_proposals):
    """mine -> relabel -> refine -> predict through the CLI, ``--device cpu`` on each command
    that runs a model."""
    ann, images = synth_dir / "annotations", synth_dir / "images"
    sets = [a for o in TINY for a in ("--set", o)]
    r = CliRunner()
    res = r.invoke(cli, ["mine", "--dataset", str(ann / "panoptic_train.json"), "--images",
                         str(images), "--proposals", str(synth_proposals), "--out",
                         str(tmp_path / "mine"), "--device", "cpu", "--quiet", *sets])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["relabel", "--run", str(tmp_path / "mine"), "--images", str(images),
                         "--proposals", str(synth_proposals), "--out", str(tmp_path / "pseudo"),
                         "--evidence", "none", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["refine", "--run", str(tmp_path / "mine"), "--pseudo",
                         str(tmp_path / "pseudo/panoptic.json"), "--images", str(images),
                         "--out", str(tmp_path / "refine"), "--device", "cpu", "--quiet",
                         "--set", "solver.max_iter=2", "--set", "refine.mask_channels=8",
                         "--set", "refine.semantic_channels=8"])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["predict", "--run", str(tmp_path / "refine"), "--images", str(images),
                         "--dataset", str(ann / "panoptic_val.json"), "--proposals",
                         str(synth_proposals), "--out", str(tmp_path / "pred"), "--device",
                         "cpu", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["images"] == 6


@pytest.mark.parametrize("args, msg", [
    (["--device", "cuda"], "no CUDA device is available"),
    (["--gpus", "1"], "--gpus given but no CUDA device is available"),
    (["--gpus", "1", "--device", "cpu"], "for CPU workers use --nproc"),
    (["--nproc", "2", "--device", "cuda:0"], "for GPUs use --gpus N"),
])
def test_devices_this_machine_lacks_are_refused_before_any_work(tmp_path, synth_dir,
                                                                 synth_proposals, args, msg,
                                                                 monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ann = synth_dir / "annotations"
    res = CliRunner().invoke(cli, [
        "mine", "--dataset", str(ann / "panoptic_train.json"), "--images",
        str(synth_dir / "images"), "--proposals", str(synth_proposals), "--out",
        str(tmp_path / "run"), *args])
    assert res.exit_code in (1, 2) and msg in res.output, res.output
    assert not (tmp_path / "run").exists()


def _first_losses(device_args: list[str], synth_dir: Path, synth_proposals: Path,
                  out: Path) -> list[float]:
    """The first 20 logged losses of ``jtsm mine DEVICE_ARGS`` (dropout off, float32)."""
    sets = [*TINY, "solver.max_iter=20", "solver.log_period=1", "mining.dropout=0",
            "backbone.precision=fp32"]
    res = CliRunner().invoke(cli, [
        "mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"), "--images",
        str(synth_dir / "images"), "--proposals", str(synth_proposals), "--out", str(out),
        "--quiet", *device_args, *[a for o in sets for a in ("--set", o)]])
    assert res.exit_code == 0, res.output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


def test_the_loss_log_the_gpu_check_compares_is_reproducible(tmp_path, synth_dir,
                                                            synth_proposals):
    """What the ``--gpus 1`` comparison rests on: on one device two runs log the same 20
    losses, and they change as training goes."""
    a = _first_losses(["--device", "cpu"], synth_dir, synth_proposals, tmp_path / "a")
    b = _first_losses(["--device", "cpu"], synth_dir, synth_proposals, tmp_path / "b")
    assert len(a) == 20 and a == b and len(set(a)) > 1


@pytest.mark.cuda
@CUDA
def test_gpus_1_gives_the_cpus_first_20_losses(tmp_path, synth_dir, synth_proposals):
    """The same run with ``--gpus 1`` and with ``--device cpu``: the first 20 logged losses
    agree within float tolerance (GPU kernels sum in another order)."""
    cpu = _first_losses(["--device", "cpu"], synth_dir, synth_proposals, tmp_path / "cpu")
    gpu = _first_losses(["--gpus", "1"], synth_dir, synth_proposals, tmp_path / "cuda")
    assert len(cpu) == len(gpu) == 20
    torch.testing.assert_close(torch.tensor(gpu), torch.tensor(cpu), rtol=2e-3, atol=2e-4)


@pytest.mark.cuda
@CUDA
def test_a_cuda_run_predicts_on_the_cpu(tmp_path, synth_dir, synth_proposals):
    run = tmp_path / "run"
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, run, write_outputs=False, device="cuda")
    gpu = load_run(run, "cuda")
    cpu = load_run(run, "cpu")
    assert next(gpu.model.parameters()).is_cuda and not next(cpu.model.parameters()).is_cuda
    buf = io.BytesIO()
    torch.save(gpu.model.state_dict(), buf)
    assert all(torch.equal(v.cpu(), cpu.model.state_dict()[k])
               for k, v in gpu.model.state_dict().items())
