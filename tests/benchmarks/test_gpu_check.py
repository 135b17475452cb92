"""The GPU check's parts that a CPU can check: its limits, its plan, its report."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import gpu_check
import pytest

ROOT = Path(__file__).resolve().parents[2]
SH = ROOT / "benchmarks" / "gpu_check.sh"


def test_the_limits_fit_in_eight_minutes():
    assert gpu_check.INSTALL_TIMEOUT + sum(gpu_check.GPU_TIMEOUTS.values()) <= 480
    assert set(gpu_check.GPU_TIMEOUTS) == set(gpu_check.DRY_TIMEOUTS) == {
        name for name, _, _ in gpu_check.plan(Path("/tmp/out"), dry=False)}
    # the shell script reads the install step's limit from gpu_check.py
    line = next(ln for ln in SH.read_text().splitlines() if ln.startswith("LIMIT=$(sed"))
    expr = re.search(r"sed -n '([^']+)'", line).group(1)
    got = subprocess.run(["sed", "-n", expr, str(ROOT / "benchmarks/gpu_check.py")],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert got == str(gpu_check.INSTALL_TIMEOUT)


def test_every_runtime_requirement_is_probed():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in deps}
    text = SH.read_text()
    pairs = re.findall(r"(\w+):([\w.-]+)", " ".join(
        re.search(rf'^{v}="([^"]+)"', text, re.M | re.S).group(1).replace("\\\n", " ")
        for v in ("REQUIRED", "OPTIONAL")))
    modules = {m for m, _ in pairs}
    module_of = {"opencv-contrib-python": "cv2", "scikit-image": "skimage"}
    assert modules == {module_of.get(n, n) for n in names}


def test_the_script_refuses_bad_arguments(tmp_path):
    res = subprocess.run(["bash", str(SH), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--cpu-dry-run" in res.stdout and "--wheels" in res.stdout
    res = subprocess.run(["bash", str(SH), "--bogus"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument --bogus" in res.stderr
    res = subprocess.run(["bash", str(SH), "--wheels", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no such folder" in res.stderr


def test_the_gpu_plan_measures_what_the_report_promises():
    steps = {name: " ".join(cmd) for name, cmd, _ in gpu_check.plan(Path("/o"), dry=False)}
    assert "-m cuda" in steps["cuda-tests"]
    assert "--junitxml /o/cuda_tests.xml" in steps["cuda-tests"]
    for f in ("tests/ops/test_binned_max_op.py", "tests/engine/test_devices.py"):
        assert f in gpu_check.cuda_test_files() and f in steps["cuda-tests"]
    assert "--device cuda" in steps["train"] and "--precisions fp32,bf16" in steps["train"]
    assert "--proposals" not in steps["train"]  # the script's default: 2000 and 4000
    assert "--device cuda --device cpu" in steps["train-cpu"]
    assert "--counts 2000 4000" in steps["pooling"] and "--device cuda" in steps["pooling"]
    dry = {name: " ".join(cmd) for name, cmd, _ in gpu_check.plan(Path("/o"), dry=True)}
    assert "cuda" not in dry["train"].replace("--json", "") and "--scales 96,128" in dry["train"]


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" '
                   'failures="2" skipped="3" tests="10" time="1"></testsuite></testsuites>')
    assert gpu_check.junit_counts(xml) == {"passed": 4, "failed": 2, "errors": 1,
                                           "skipped": 3, "total": 10}
    assert gpu_check.junit_counts(tmp_path / "missing.xml") is None


def _rec(device, precision, sec, peak, syncs=None, stage="mine"):
    return {"device": device, "stage": stage, "backbone": "resnet50", "proposals": 4000,
            "precision": precision, "steps": 6, "short_sides": [480], "sec_per_image": sec,
            "images_per_s": 1 / sec, "peak_mb": peak, "peak_kind": "x",
            "host_syncs_per_step": syncs, "mean_on_cells": 210.0}


def test_report_tables():
    train = [_rec("cuda", "fp32", 0.2, 9000, 7), _rec("cuda", "bf16", 0.125, 6000, 7),
             _rec("cuda", "fp32", 0.3, 9500, 9, stage="refine")]
    pairs = gpu_check.bf16_vs_fp32(train)
    assert pairs == [{"device": "cuda", "stage": "mine", "backbone": "resnet50",
                      "proposals": 4000, "fp32_s": 0.2, "bf16_s": 0.125, "bf16_speedup": 1.6,
                      "fp32_peak_mb": 9000, "bf16_peak_mb": 6000}]
    ratio = gpu_check.gpu_cpu_ratio([_rec("cuda", "fp32", 0.05, 1), _rec("cpu", "fp32", 2, 1)])
    assert ratio == {"cpu_s": 2, "gpu_s": 0.05, "gpu_speedup": 40.0}
    rep = {"mode": "gpu", "started": "t", "wall_s": 400.0, "ok": False,
           "machine": {"gpu": {"name": "NVIDIA H100", "memory_gib": 79.1, "capability": "9.0",
                               "driver": "550"}, "torch": "2.11.0"},
           "install": {"status": "passed", "wall_s": 12.0, "timeout_s": 45, "mode": "wheel",
                       "installed": "pycocotools", "missing": ""},
           "steps": [{"name": "train", "status": "timeout", "wall_s": 160.0, "timeout_s": 160,
                      "log": "logs/train.log", "last_line": "cuda mine ..."}],
           "cuda_tests": {"passed": 9, "failed": 0, "errors": 0, "skipped": 0, "total": 9},
           "train": train, "bf16_vs_fp32": pairs, "gpu_cpu": ratio, "train_cpu": [],
           "pooling": [{"device": "cuda", "method": "moi", "proposals": 2000, "ms": 3.5,
                        "vs_tv_roipool": 1.4, "peak_rise_mb": 800.0}]}
    text = gpu_check.text_report(rep)
    assert "SOME STEPS FAILED" in text and "NVIDIA H100 (79.1 GiB" in text
    assert re.search(r"train\s+timeout\s+160\.0 s", text)
    assert "CUDA tests: 9 passed, 0 failed" in text
    assert re.search(r"cuda\s+mine\s+resnet50\s+4000 bf16\s+8\.00\s+0\.125\s+6,000\s+7", text)
    assert "(1.60x), peak 9,000 -> 6,000 MB" in text and "40.0x" in text
    assert re.search(r"cuda\s+moi\s+2000\s+3\.5\s+1\.40x\s+800", text)


@pytest.mark.parametrize("dry", [True, False])
def test_plan_runs_this_python(dry):
    import sys

    for _, cmd, _ in gpu_check.plan(Path("/o"), dry):
        assert cmd[0] == sys.executable
