"""Devices: ``--device`` on every stage, checkpoints across devices, and the CUDA checks.

The CUDA tests (``-m cuda``) run where a GPU is (``benchmarks/gpu_check.sh``); elsewhere they
are skipped, and the CPU tests here check all that a CPU can.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from jtsm.config import load_config
from jtsm.engine.device import resolve_device, tf32_allowed, training_backends
from jtsm.engine.mine import run_mine
from jtsm.engine.runs import load_run
from jtsm.errors import ConfigError
from jtsm.rundir.fingerprint import record_weights
from jtsm_cli.main import cli

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TINY = ["solver.max_iter=3", "solver.warmup_iters=1", "solver.steps=[2]", "mining.fc_dim=16",
        "mining.oicr_heads=1", "input.train_scales=[64]", "input.test_scales=[64]",
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


def _other_weights(run: Path, seed: int) -> dict[str, torch.Tensor]:
    """A state dict of the run's model with every float tensor moved off both its init and
    its trained values (drawn from ``seed``): weights only a loader that reads the file can
    give back."""
    from jtsm.engine.runs import load_run

    g = torch.Generator().manual_seed(seed)
    state = load_run(run, "cpu").model.state_dict()
    return {k: v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in state.items()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synth_dir, synth_proposals) -> Path:
    """A finished 3-iteration mining run on the CPU (its folder: config, meta, weights)."""
    run = tmp_path_factory.mktemp("devices") / "run"
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, run, write_outputs=False, device="cpu")
    return run


def test_a_run_saved_on_a_gpu_loads_on_the_cpu_with_the_original_weights(tmp_path, tiny_run):
    """``model_final.pt`` written from ``cuda:0`` in float64 (storages tagged as a GPU's
    ``torch.save`` tags them) loads onto a CPU-only machine (it would not without
    ``map_location``) into float32 CPU tensors equal to the weights it was written from: not
    to another load of the same file, so a loader that lost the device mapping, the dtype or
    the values fails here."""
    original = _other_weights(tiny_run, seed=7)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    torch.save({k: v.double() if v.is_floating_point() else v for k, v in original.items()},
               tmp_path / "cpu64.pt")
    _as_if_saved_on_cuda(tmp_path / "cpu64.pt", run / "model_final.pt")
    record_weights(run)  # as the GPU run records the file it wrote
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(run / "model_final.pt", weights_only=True)
    state = load_run(run, "cpu").model.state_dict()
    trained = torch.load(tiny_run / "model_final.pt", weights_only=True)
    assert sorted(state) == sorted(original)
    for k, v in original.items():
        assert state[k].device.type == "cpu" and state[k].dtype == v.dtype, k
        assert torch.equal(state[k], v), k
        if v.is_floating_point():
            assert not torch.equal(state[k], trained[k]), k  # the file's, not the run's


def test_every_stage_runs_with_device_cpu_given(tmp_path, synth_dir, synth_proposals):
    """mine -> relabel -> refine -> predict through the CLI, ``--device cpu`` on each command
    that runs a model (refine with ``--deterministic``, which leaves the process as it was)."""
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
                         "--deterministic", "--set", "solver.max_iter=2", "--set",
                         "refine.mask_channels=8", "--set", "refine.semantic_channels=8"])
    assert res.exit_code == 0, res.output
    assert not torch.are_deterministic_algorithms_enabled()
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
def test_gpus_1_gives_the_cpus_first_20_losses(tmp_path, synth_dir, synth_proposals,
                                               monkeypatch):
    """The same run with ``--gpus 1`` and with ``--device cpu``: the first 20 logged losses
    agree within float tolerance (GPU kernels sum in another order). Full float32 on the GPU
    (``JTSM_TF32=0``): TF32's 10-bit products are not what this compares."""
    monkeypatch.setenv("JTSM_TF32", "0")
    cpu = _first_losses(["--device", "cpu"], synth_dir, synth_proposals, tmp_path / "cpu")
    gpu = _first_losses(["--gpus", "1"], synth_dir, synth_proposals, tmp_path / "cuda")
    assert len(cpu) == len(gpu) == 20
    torch.testing.assert_close(torch.tensor(gpu), torch.tensor(cpu), rtol=2e-3, atol=2e-4)


@pytest.mark.cuda
@CUDA
def test_a_cuda_run_predicts_on_the_cpu(tmp_path, synth_dir, synth_proposals):
    """A run trained on ``cuda`` loads on the CPU and on the GPU; and weights a GPU model
    saves (its own CUDA tensors) load on the CPU equal to that model's weights."""
    run = tmp_path / "run"
    run_mine(load_config(overrides=TINY), synth_dir / "annotations/panoptic_train.json",
             synth_dir / "images", synth_proposals, run, write_outputs=False, device="cuda")
    gpu = load_run(run, "cuda")
    assert next(gpu.model.parameters()).is_cuda
    assert not next(load_run(run, "cpu").model.parameters()).is_cuda
    original = {k: v.cuda() for k, v in _other_weights(run, seed=11).items()}
    gpu.model.load_state_dict(original)
    torch.save(gpu.model.state_dict(), run / "model_final.pt")
    record_weights(run)  # the run's own weights file, as a run records it
    state = load_run(run, "cpu").model.state_dict()
    for k, v in original.items():
        assert state[k].device.type == "cpu" and torch.equal(state[k], v.cpu()), k


@pytest.fixture()
def _backends_restored():
    """The process-wide settings training_backends touches, put back after the test
    whatever it did."""
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), cudnn.deterministic,
             cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]
    torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32 = saved[4], saved[5]
    if saved[6] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[6]


def _tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.usefixtures("_backends_restored")
def test_tf32_is_on_for_fp32_on_cuda_only_and_restored_after(monkeypatch):
    """torch's switches are process-wide flags, set here for a CUDA device without using
    one: TF32 with fp32 on CUDA, off with bf16 or ``JTSM_TF32=0``; a CPU run leaves them
    alone; each run puts back what it found."""
    monkeypatch.delenv("JTSM_TF32", raising=False)
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    with training_backends(cuda, "fp32"):
        assert _tf32() == (True, True)
    assert _tf32() == (False, True)
    with training_backends(cuda, "bf16"):
        assert _tf32() == (False, False)
    with training_backends(cpu, "fp32"):
        assert _tf32() == (False, True)
    assert not tf32_allowed(cpu, "fp32") and tf32_allowed(cuda, "fp32")
    monkeypatch.setenv("JTSM_TF32", "0")
    with training_backends(cuda, "fp32"):
        assert _tf32() == (False, False)
    monkeypatch.setenv("JTSM_TF32", "yes")
    with pytest.raises(ConfigError, match="JTSM_TF32='yes': want 1"):
        tf32_allowed(cuda, "fp32")


@pytest.mark.usefixtures("_backends_restored")
def test_deterministic_sets_torch_and_cuda_switches_and_restores_them(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    with training_backends(torch.device("cuda"), "fp32", deterministic=True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.backends.cudnn.benchmark
    with training_backends(torch.device("cpu"), "fp32", deterministic=True):
        assert torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # a CUDA setting, not a CPU one
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own valid choice
    with training_backends(torch.device("cuda"), "fp32", deterministic=True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    with pytest.raises(ValueError, match="inside"), \
            training_backends(torch.device("cpu"), "fp32", deterministic=True):
        raise ValueError("inside")
    assert not torch.are_deterministic_algorithms_enabled()  # restored on an error too


def _mine_cli(out: Path, synth_dir: Path, synth_proposals: Path, *args: str) -> None:
    sets = [a for o in TINY for a in ("--set", o)]
    res = CliRunner().invoke(cli, [
        "mine", "--dataset", str(synth_dir / "annotations/panoptic_train.json"), "--images",
        str(synth_dir / "images"), "--proposals", str(synth_proposals), "--out", str(out),
        "--quiet", *args, *sets])
    assert res.exit_code == 0, res.output


@pytest.mark.usefixtures("_backends_restored")
def test_deterministic_mining_on_the_cpu_runs_deterministic_and_changes_nothing(
        tmp_path, synth_dir, synth_proposals, tiny_run, monkeypatch):
    """``jtsm mine --deterministic``: the worker trains with deterministic algorithms on
    (and the process has them off again after); on a CPU the weights equal a run without it
    to float rounding, and the job (config digest) is the same, so either resumes the
    other."""
    import jtsm.engine.mine as mine_module

    real, seen = mine_module.run_mine, []

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(mine_module, "run_mine", spy)
    torch.use_deterministic_algorithms(False)
    _mine_cli(tmp_path / "det", synth_dir, synth_proposals, "--device", "cpu",
              "--deterministic")
    assert seen == [True] and not torch.are_deterministic_algorithms_enabled()
    det = torch.load(tmp_path / "det/model_final.pt", weights_only=True)
    plain = torch.load(tiny_run / "model_final.pt", weights_only=True)
    assert sorted(det) == sorted(plain)
    # deterministic algorithms may sum in another order on a CPU too (seen: 4e-9 in the
    # stem's weights after 3 iterations), so equal to float rounding, not bit for bit
    for k in plain:
        torch.testing.assert_close(det[k], plain[k], rtol=0, atol=1e-6)

    def job(run: Path) -> dict:
        return json.loads((run / "meta.json").read_text())["fingerprint"]

    assert job(tmp_path / "det")["config"] == job(tiny_run)["config"]


@pytest.mark.cuda
@CUDA
def test_deterministic_mining_on_a_gpu_repeats_bit_for_bit(tmp_path, synth_dir,
                                                           synth_proposals):
    """Two ``jtsm mine --gpus 1 --deterministic`` runs end with the same weights, bit for
    bit: every op of the mining stage has a deterministic CUDA kernel (convolutions, cuBLAS
    with its fixed workspace, MoIPool's index_add_), so none warns."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a", "b"):
            _mine_cli(tmp_path / name, synth_dir, synth_proposals, "--gpus", "1",
                      "--deterministic")
    a = torch.load(tmp_path / "a/model_final.pt", weights_only=True)
    b = torch.load(tmp_path / "b/model_final.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [str(w.message) for w in caught if "deterministic" in str(w.message)]
