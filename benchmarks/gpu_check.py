"""The steps of the one-GPU check and its report (``benchmarks/gpu_check.sh`` runs this).

``gpu_check.sh`` makes jtsm importable (its install step) and then runs
``python benchmarks/gpu_check.py --out OUT [--cpu-dry-run] [--install-json FILE]``, which runs
every step in its own process under its own time limit and writes one report,
``OUT/gpu_check.json`` and ``OUT/gpu_check.txt``, with each step's status and wall time and
every figure measured; each step's output goes to ``OUT/logs/<step>.log``.

Steps (GPU mode; limits in :data:`GPU_TIMEOUTS`, together with the install step's at most
480 s):

1. ``machine``: GPU name and memory, driver, torch / torchvision / Python versions, whether
   jtsm's C kernels were built and which optional packages are present;
2. ``cuda-tests``: ``pytest -m cuda`` on the test files that hold CUDA tests (counts from its
   JUnit XML);
3. ``train``: ``bench_train_throughput.py`` on the GPU: mine and refine, ResNet18-WS and
   ResNet50, 2000 and 4000 realistic proposals, fp32 and bf16, at VOC shapes: images/s, peak
   memory, host synchronisations per step;
4. ``train-cpu``: the same script, one configuration at one size (mine, ResNet18-WS, 2000
   proposals, fp32, short side 480) on the GPU and for one step on the CPU: the speed ratio;
5. ``pooling``: MoIPool, MoIPool-TPS and torchvision's RoIPool / RoIAlign forward + backward
   on the GPU, on ``bench_pooling.py``'s inputs (2000 and 4000 proposals): ms and peak memory.

``--cpu-dry-run`` runs every step on the CPU at small sizes (96-128 px images, 50-100
proposals, one step, a 256-wide mining head), with the GPU hidden, to check the script and its
report end to end in a few minutes; the CUDA tests are then skipped, and their CPU twin (the
loss log the GPU run is compared with) runs instead.

Internal: ``--step machine|pooling`` runs one step's measurement and prints its JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
#: The install step's limit (``gpu_check.sh`` reads it from here).
INSTALL_TIMEOUT = 45
#: Per-step limits in seconds on a GPU; with :data:`INSTALL_TIMEOUT` at most 480 in all.
GPU_TIMEOUTS = {"machine": 20, "cuda-tests": 150, "train": 160, "train-cpu": 50, "pooling": 50}
#: The same on the CPU dry run (small sizes; the bound is what a busy 2-core machine needs).
DRY_TIMEOUTS = {"machine": 60, "cuda-tests": 240, "train": 300, "train-cpu": 120,
                "pooling": 120}
#: What the report's ``optional`` lists: import name -> pip package.
PACKAGES = {"pycocotools": "pycocotools", "pyspng": "pyspng", "cv2.ximgproc":
            "opencv-contrib-python"}


# ---- the measurements run in their own process (--step) ------------------------------------
def machine_info() -> dict[str, Any]:
    """The machine, the Python, torch, the GPU and what jtsm found (one JSON-ready dict)."""
    import importlib

    import cv2
    import torch
    import torchvision

    import jtsm
    from jtsm.ops.binned_max import kernel_available

    try:
        from jtsm.evaluation import _pngcore  # noqa: F401
        pngcore = True
    except ImportError:
        pngcore = False
    optional = {}
    for mod, pkg in PACKAGES.items():
        if mod == "cv2.ximgproc":
            optional[pkg] = hasattr(cv2, "ximgproc")
            continue
        try:
            importlib.import_module(mod)
            optional[pkg] = True
        except ImportError:
            optional[pkg] = False
    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "opencv": cv2.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "jtsm_path": str(Path(jtsm.__file__).parent),
        "c_kernels": {"binnedmax": kernel_available(), "pngcore": pngcore},
        "optional": optional, "gpu": None,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                       "capability": f"{p.major}.{p.minor}", "count": torch.cuda.device_count(),
                       "bf16": torch.cuda.is_bf16_supported()}
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10)
            info["gpu"]["driver"] = smi.stdout.strip().splitlines()[0] if smi.stdout else None
        except (OSError, subprocess.SubprocessError):
            info["gpu"]["driver"] = None
    return info


def pooling_figures(device: str, counts: list[int], repeat: int) -> list[dict[str, Any]]:
    """Forward + backward ms (best of ``repeat``) and peak memory of each pooling op on
    ``device``, on ``bench_pooling.py``'s inputs (realistic segments on a 608x800 image,
    512 channels at stride 16), one record per (op, proposal count)."""
    import torch
    from bench_pooling import STRIDE, C, H, W, make_proposals, run, time_methods

    methods = ["moi", "moi-tps", "tv-roipool", "tv-roialign"]
    feat = torch.randn(1, C, H // STRIDE, W // STRIDE,
                       generator=torch.Generator().manual_seed(1)).to(device)
    out = []
    for n in counts:
        props = make_proposals(n).to(device)
        times = time_methods(feat, props, repeat, methods)
        for m in methods:
            peak = None
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                run(m, feat, props)
                torch.cuda.synchronize()
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            out.append({"device": device, "method": m, "proposals": n, "channels": C,
                        "feature_map": [H // STRIDE, W // STRIDE], "ms": 1e3 * times[m],
                        "vs_tv_roipool": times[m] / times["tv-roipool"],
                        "peak_rise_mb": peak})
    return out


# ---- the steps -----------------------------------------------------------------------------
def cuda_test_files() -> list[str]:
    """The test files that hold a ``@pytest.mark.cuda`` test (relative to the repository)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text(encoding="utf-8"))


def junit_counts(path: Path) -> dict[str, int] | None:
    """``{passed, failed, errors, skipped, total}`` of a pytest JUnit XML file."""
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                           "skipped")}
    return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
            "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"],
            "total": n["tests"]}


def plan(out: Path, dry: bool) -> list[tuple[str, list[str], dict[str, str]]]:
    """``(step, command, extra environment)`` of every step, in order."""
    py = sys.executable
    me = str(BENCH / "gpu_check.py")
    train = [py, str(BENCH / "bench_train_throughput.py")]
    files = cuda_test_files()
    tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml",
             str(out / "cuda_tests.xml"), *files]
    # a subprocess of pytest must import the same jtsm as the others: not the checkout's
    # copy that ``python -m`` would put first on sys.path (PYTHONSAFEPATH, Python >= 3.11)
    safe = {"PYTHONSAFEPATH": "1"}
    if dry:
        small = ["--scales", "96,128", "--set", "mining.fc_dim=256", "--cpu-steps", "1"]
        return [
            ("machine", [py, me, "--step", "machine", "--json", str(out / "machine.json")], {}),
            # CPU: the CUDA tests skip; their CPU twin (same fixture, same loss log) runs
            ("cuda-tests", [*tests, "-k", "cuda or gpu_check"], safe),
            ("train", [*train, "--device", "cpu", "--proposals", "50,100", "--precisions",
                       "fp32,bf16", *small, "--json", str(out / "train.json")], {}),
            ("train-cpu", [*train, "--device", "cpu", "--stages", "mine", "--backbones",
                           "resnet18-ws", "--proposals", "50", "--precisions", "fp32", *small,
                           "--json", str(out / "train_cpu.json")], {}),
            ("pooling", [py, me, "--step", "pooling", "--device", "cpu", "--counts", "100",
                         "--repeat", "1", "--json", str(out / "pooling.json")], {}),
        ]
    return [
        ("machine", [py, me, "--step", "machine", "--json", str(out / "machine.json")], {}),
        ("cuda-tests", [*tests, "-m", "cuda"], safe),
        ("train", [*train, "--device", "cuda", "--steps", "6", "--precisions", "fp32,bf16",
                   "--json", str(out / "train.json")], {}),
        ("train-cpu", [*train, "--device", "cuda", "--device", "cpu", "--stages", "mine",
                       "--backbones", "resnet18-ws", "--proposals", "2000", "--precisions",
                       "fp32", "--scales", "480", "--steps", "3", "--cpu-steps", "1",
                       "--json", str(out / "train_cpu.json")], {}),
        ("pooling", [py, me, "--step", "pooling", "--device", "cuda", "--counts", "2000",
                     "4000", "--repeat", "3", "--json", str(out / "pooling.json")], {}),
    ]


def run_step(name: str, cmd: list[str], extra_env: dict[str, str], timeout: int, out: Path,
             dry: bool) -> dict[str, Any]:
    """Run one step with its limit; its output goes to ``OUT/logs/<name>.log``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra_env)
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU even on a machine with a GPU
    log = out / "logs" / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "passed" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the step and whatever it started
            proc.wait()
            rc, status = None, "timeout"
    wall = time.perf_counter() - t0
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if status != "passed" else []
    return {"name": name, "status": status, "rc": rc, "wall_s": round(wall, 1),
            "timeout_s": timeout, "log": str(log.relative_to(out)),
            "command": shlex.join(Path(c).name if c == sys.executable else c for c in cmd),
            **({"last_line": tail[0][:300]} if tail else {})}


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bf16_vs_fp32(train: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (device, stage, backbone, proposals): fp32 and bf16 s/image, speed-up, memory."""
    by: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in train:
        by.setdefault((r["device"], r["stage"], r["backbone"], r["proposals"]), {})[
            r["precision"]] = r
    out = []
    for (dev, stage, bb, n), d in by.items():
        if "fp32" in d and "bf16" in d:
            f, b = d["fp32"], d["bf16"]
            out.append({"device": dev, "stage": stage, "backbone": bb, "proposals": n,
                        "fp32_s": f["sec_per_image"], "bf16_s": b["sec_per_image"],
                        "bf16_speedup": f["sec_per_image"] / b["sec_per_image"],
                        "fp32_peak_mb": f["peak_mb"], "bf16_peak_mb": b["peak_mb"]})
    return out


def gpu_cpu_ratio(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    cpu = [r for r in records if r["device"] == "cpu"]
    gpu = [r for r in records if r["device"] != "cpu"]
    if not cpu or not gpu:
        return None
    return {"cpu_s": cpu[0]["sec_per_image"], "gpu_s": gpu[0]["sec_per_image"],
            "gpu_speedup": cpu[0]["sec_per_image"] / gpu[0]["sec_per_image"]}


def text_report(rep: dict[str, Any]) -> str:
    """The report as text: machine, steps, then each table of figures."""
    m = rep.get("machine") or {}
    gpu = m.get("gpu") or {}
    lines = [f"jtsm GPU check ({rep['mode']}), {rep['started']}, {rep['wall_s']:.0f} s in all: "
             + ("ALL STEPS PASSED" if rep["ok"] else "SOME STEPS FAILED"),
             f"machine: {gpu.get('name', 'no GPU')}"
             + (f" ({gpu['memory_gib']} GiB, capability {gpu['capability']}, driver "
                f"{gpu.get('driver')})" if gpu else "")
             + f"; torch {m.get('torch')} (CUDA {m.get('torch_cuda')}), torchvision "
               f"{m.get('torchvision')}, Python {m.get('python')}, {m.get('cpu_count')} CPUs",
             f"jtsm: {m.get('jtsm_path')}; C kernels {m.get('c_kernels')}; optional "
             f"{m.get('optional')}", "", "steps:"]
    inst = rep.get("install") or {}
    lines.append(f"  {'install':<11} {inst.get('status', '?'):<8} "
                 f"{inst.get('wall_s', 0):>6.1f} s  (limit {inst.get('timeout_s', '?')} s; "
                 f"{inst.get('mode', '')}; installed {inst.get('installed') or 'nothing'}; "
                 f"missing {inst.get('missing') or 'nothing'})")
    for s in rep["steps"]:
        lines.append(f"  {s['name']:<11} {s['status']:<8} {s['wall_s']:>6.1f} s  "
                     f"(limit {s['timeout_s']} s; {s['log']})"
                     + (f"  {s['last_line']}" if "last_line" in s else ""))
    t = rep.get("cuda_tests")
    dry = " (dry run: the CUDA ones skip, their CPU twin runs)" if rep["mode"] != "gpu" else ""
    lines += ["", f"CUDA tests{dry}: " + (f"{t['passed']} passed, {t['failed']} failed, "
                                    f"{t['errors']} errors, {t['skipped']} skipped"
                                    if t else "no result")]
    lines += ["", "training throughput (median s/image; peak: CUDA max allocated or CPU peak "
              "RSS):",
              f"  {'device':<6} {'stage':<6} {'backbone':<12} {'props':>5} {'prec':<4} "
              f"{'images/s':>9} {'s/image':>8} {'peak MB':>9} {'syncs':>5} {'on-cells':>8}"]
    for r in rep.get("train") or []:
        sync = "-" if r["host_syncs_per_step"] is None else str(r["host_syncs_per_step"])
        lines.append(f"  {r['device']:<6} {r['stage']:<6} {r['backbone']:<12} "
                     f"{r['proposals']:>5} {r['precision']:<4} {r['images_per_s']:>9.2f} "
                     f"{r['sec_per_image']:>8.3f} {r['peak_mb']:>9,.0f} {sync:>5} "
                     f"{r['mean_on_cells']:>8.0f}")
    lines += ["", "bf16 vs fp32:"]
    for r in rep.get("bf16_vs_fp32") or []:
        lines.append(f"  {r['device']:<6} {r['stage']:<6} {r['backbone']:<12} "
                     f"{r['proposals']:>5}: fp32 {r['fp32_s']:.3f} s, bf16 {r['bf16_s']:.3f} s "
                     f"({r['bf16_speedup']:.2f}x), peak {r['fp32_peak_mb']:,.0f} -> "
                     f"{r['bf16_peak_mb']:,.0f} MB")
    ratio = rep.get("gpu_cpu")
    lines += ["", "GPU vs CPU (mine, resnet18-ws, fp32, one size): "
              + (f"CPU {ratio['cpu_s']:.3f} s/image, GPU {ratio['gpu_s']:.3f} s/image, "
                 f"{ratio['gpu_speedup']:.1f}x" if ratio else "no ratio (one device only)")]
    for r in rep.get("train_cpu") or []:
        lines.append(f"  {r['device']:<6} {r['sec_per_image']:.3f} s/image at short side "
                     f"{r['short_sides']}")
    lines += ["", "pooling fwd+bwd (bench_pooling.py inputs):",
              f"  {'device':<6} {'method':<12} {'props':>5} {'ms':>9} {'vs roipool':>10} "
              f"{'peak MB':>8}"]
    for r in rep.get("pooling") or []:
        peak = "-" if r["peak_rise_mb"] is None else f"{r['peak_rise_mb']:,.0f}"
        lines.append(f"  {r['device']:<6} {r['method']:<12} {r['proposals']:>5} "
                     f"{r['ms']:>9.1f} {r['vs_tv_roipool']:>9.2f}x {peak:>8}")
    return "\n".join(lines) + "\n"


def run_all(out: Path, dry: bool, install_json: Path | None) -> int:
    """Run every step, write the report, return the exit status (0: every step passed)."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for stale in ("machine.json", "train.json", "train_cpu.json", "pooling.json",
                  "cuda_tests.xml"):
        (out / stale).unlink(missing_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    install = _load(install_json) if install_json else None
    timeouts = DRY_TIMEOUTS if dry else GPU_TIMEOUTS
    steps = []
    for name, cmd, env in plan(out, dry):
        if name != "machine" and steps and steps[0]["status"] != "passed" and not dry:
            steps.append({"name": name, "status": "not run", "rc": None, "wall_s": 0.0,
                          "timeout_s": timeouts[name], "log": "-", "command": "",
                          "last_line": "the machine step failed"})
            continue
        steps.append(run_step(name, cmd, env, timeouts[name], out, dry))
        print(f"{name}: {steps[-1]['status']} ({steps[-1]['wall_s']} s)", flush=True)
        if name == "machine" and not dry and steps[-1]["status"] == "passed":
            m = _load(out / "machine.json") or {}
            if not m.get("cuda_available"):
                steps[-1].update(status="failed", last_line="torch sees no CUDA device (run "
                                 "with --cpu-dry-run to check the script on a CPU)")
    rep: dict[str, Any] = {
        "mode": "cpu-dry-run" if dry else "gpu", "started": started,
        "machine": _load(out / "machine.json"), "install": install, "steps": steps,
        "cuda_tests": junit_counts(out / "cuda_tests.xml"),
        "train": _load(out / "train.json") or [],
        "train_cpu": _load(out / "train_cpu.json") or [],
        "pooling": _load(out / "pooling.json") or [],
    }
    rep["bf16_vs_fp32"] = bf16_vs_fp32(rep["train"])
    rep["gpu_cpu"] = gpu_cpu_ratio(rep["train_cpu"])
    rep["host_syncs_per_step"] = {
        f"{r['stage']}/{r['backbone']}/{r['proposals']}/{r['precision']}":
            r["host_syncs_per_step"] for r in rep["train"]
        if r["host_syncs_per_step"] is not None}
    rep["ok"] = all(s["status"] == "passed" for s in steps) and (
        install is None or install.get("status") == "passed")
    rep["wall_s"] = round(time.perf_counter() - t0 + (install or {}).get("wall_s", 0.0), 1)
    (out / "gpu_check.json").write_text(json.dumps(rep, indent=1) + "\n")
    text = text_report(rep)
    (out / "gpu_check.txt").write_text(text)
    print(text, end="")
    return 0 if rep["ok"] else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check_out", help="report folder")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="every step on the CPU at small sizes (checks the script)")
    ap.add_argument("--install-json", help="the install step's record (from gpu_check.sh)")
    ap.add_argument("--step", choices=["machine", "pooling"], help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    ap.add_argument("--counts", type=int, nargs="+", default=[2000], help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        res: Any = (machine_info() if args.step == "machine"
                    else pooling_figures(args.device, args.counts, args.repeat))
        text = json.dumps(res, indent=1)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")
        return
    out = Path(args.out).resolve()
    sys.exit(run_all(out, args.cpu_dry_run, Path(args.install_json) if args.install_json
                     else None))


if __name__ == "__main__":
    main()
