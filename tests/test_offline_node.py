"""jtsm on an offline GPU node's own Python: no pycocotools, no pyspng, no opencv-contrib.

- In a subprocess where pycocotools and pyspng cannot be imported, every module of jtsm,
  jtsm_cli and the built-in plugins imports, ``jtsm --help`` works, and the functions that need
  one of them stop with one line naming it (the AP evaluator, RLE masks), as do the proposal
  methods that need ``cv2.ximgproc``.
- ``benchmarks/gpu_check.sh --cpu-dry-run`` runs end to end in an imitation of such a node: a
  venv that sees only torch, torchvision, numpy, OpenCV, scikit-image, click, rich, pluggy,
  pytest, scipy (and pip), with their own dependencies, through a ``.pth`` file pointing at a
  folder of links into this environment's site-packages; ``cv2.ximgproc`` hidden, the package
  index switched off (``PIP_NO_INDEX=1``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """
import sys
for name in ("pycocotools", "pyspng"):
    sys.modules[name] = None  # import pycocotools -> ImportError
"""


def _run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "blocked.py"
    script.write_text(BLOCK + code)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_jtsm_imports_and_helps_without_pycocotools(tmp_path):
    res = _run_blocked("""
import importlib, pkgutil
import jtsm, jtsm_cli
names = [m.name for p in (jtsm, jtsm_cli)
         for m in pkgutil.walk_packages(p.__path__, p.__name__ + ".")]
for n in names:
    importlib.import_module(n)
from jtsm import plugins
assert set(plugins.proposal_generators()) >= {"selective-search", "felzenszwalb", "mcg"}
assert "pycocotools" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}
print(len(names), "modules")
from jtsm_cli.main import cli
cli(["--help"], prog_name="jtsm")
""", tmp_path)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split(" modules")[0].split()[-1]) > 50
    assert "Usage: jtsm" in res.stdout and "eval" in res.stdout


def test_the_ap_evaluator_names_pycocotools_in_one_line(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "height": 4, "width": 4}],
                              "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    res = _run_blocked(f"""
from jtsm_cli.main import cli
cli(["eval", "--metric", "ap", "--gt", {str(gt)!r}, "--pred", {str(pred)!r}], prog_name="jtsm")
""", tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "Error: COCO AP (COCOeval) needs pycocotools, which is not installed here "
        "(pip install pycocotools)"]


def test_functions_that_need_pycocotools_raise_naming_it(monkeypatch, tmp_path):
    from jtsm.evaluation.instances import evaluate_ap
    from jtsm.optional_deps import MissingDependencyError
    from jtsm.structures import mask_to_rle

    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    assert mask_to_rle(mask)["size"] == [5, 6]  # with pycocotools (this environment)
    for name in ("pycocotools", "pycocotools.mask", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"^writing COCO RLE masks needs "
                                                     r"pycocotools, .*pip install pycocotools"):
        mask_to_rle(mask)
    with pytest.raises(MissingDependencyError, match=r"^COCO AP \(COCOeval\) needs pycocotools"):
        evaluate_ap(tmp_path / "never_read.json", tmp_path / "never_read_either.json")


def test_proposal_methods_that_need_ximgproc_name_opencv_contrib(monkeypatch, tmp_path):
    import cv2
    from click.testing import CliRunner

    from jtsm.optional_deps import MissingDependencyError
    from jtsm.proposals.selective_search import selective_search
    from jtsm_cli.main import cli

    monkeypatch.delattr(cv2, "ximgproc", raising=False)
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    with pytest.raises(MissingDependencyError, match=r"needs opencv-contrib-python "
                                                     r"\(cv2\.ximgproc\)"):
        selective_search(image)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), image)
    res = CliRunner().invoke(cli, ["proposals", "--images", str(tmp_path / "images"), "--out",
                                   str(tmp_path / "props"), "--method", "felzenszwalb"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith(
        "Error: Felzenszwalb graph segmentation (selective-search and felzenszwalb proposals) "
        "needs opencv-contrib-python (cv2.ximgproc)")
    assert "Traceback" not in res.output


# ---- an imitation of the offline node --------------------------------------------------------
#: What the node's own Python carries (distributions of this environment; cv2 here comes from
#: opencv-contrib-python, whose ximgproc the imitation hides).
NODE = ("torch", "torchvision", "numpy", "opencv-contrib-python", "scikit-image", "click",
        "rich", "pluggy", "pytest", "scipy", "pip")

GUARD = """# the node's OpenCV has no contrib modules: hide them, so that any use fails
import sys
try:
    import cv2
except ImportError:
    pass
else:
    if hasattr(cv2, "ximgproc"):
        del cv2.ximgproc
    for name in [m for m in sys.modules if m.startswith("cv2.ximgproc")]:
        del sys.modules[name]
    sys.modules["cv2.ximgproc"] = None
"""


def _closure(names: tuple[str, ...], leave_out: set[str]) -> list[metadata.Distribution]:
    """The distributions ``names`` and everything they require (markers evaluated, extras
    left out), from this environment."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen or name in leave_out:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this environment does not have
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def node_python(root: Path, leave_out: set[str] = frozenset()) -> Path:
    """A venv under ``root`` that sees only :data:`NODE` (less ``leave_out``) and their own
    dependencies; returns its python."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    links = root / "site"
    links.mkdir()
    for dist in _closure(NODE, set(leave_out)):
        for f in dist.files or []:
            top = f.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            src = Path(str(dist.locate_file(top)))
            if src.exists() and not (links / top).exists():
                (links / top).symlink_to(src)
    (links / "sitecustomize.py").write_text(GUARD)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True)
    (Path(purelib.stdout.strip()) / "node.pth").write_text(f"{links}\n")
    return py


def repacked_wheel(name: str, out: Path) -> Path | None:
    """A wheel of the installed distribution ``name`` rebuilt from its files (as ``pip
    download`` would have fetched it), or None where it is not installed."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    wheel = dist.read_text("WHEEL") or ""
    tag = re.search(r"^Tag: (\S+)", wheel, re.M)
    if tag is None:
        return None
    path = out / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag.group(1)}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f)))
            if f.parts[0] != ".." and "__pycache__" not in f.parts and src.is_file():
                z.write(src, str(f))
    return path


def _node_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    return env | {"PIP_NO_INDEX": "1", "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
                  "OMP_NUM_THREADS": "1"}


def test_the_imitation_hides_what_the_node_lacks(tmp_path):
    py = node_python(tmp_path)
    res = subprocess.run([str(py), "-c", """
import importlib.util as u, cv2, torch, skimage, scipy, click, rich, pluggy, pytest
print([m for m in ("pycocotools", "pyspng", "hypothesis", "h5py", "jtsm")
       if u.find_spec(m) is not None], hasattr(cv2, "ximgproc"))
"""], capture_output=True, text=True, env=_node_env(tmp_path), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]", "False"]


@pytest.mark.slow
def test_gpu_check_dry_run_on_an_offline_node(tmp_path):
    """The whole dry run (a few minutes on 2 cores), installing only what the node lacks from
    a small wheels folder: pyspng there, pycocotools nowhere."""
    py = node_python(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    spng = repacked_wheel("pyspng", wheels)
    out = tmp_path / "report"
    res = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--cpu-dry-run",
                          "--wheels", str(wheels), "--out", str(out)],
                         capture_output=True, text=True, env=_node_env(tmp_path) | {
                             "PYTHON": str(py)}, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rep = json.loads((out / "gpu_check.json").read_text())
    text = (out / "gpu_check.txt").read_text()
    assert rep["mode"] == "cpu-dry-run" and rep["ok"] and "ALL STEPS PASSED" in text
    inst = rep["install"]
    assert inst["status"] == "passed" and inst["mode"] == "wheel"  # torch brings setuptools
    assert inst["installed"] == ("pyspng" if spng else "")
    assert inst["missing"] == ("pycocotools" if spng else "pycocotools pyspng")
    steps = {s["name"]: s for s in rep["steps"]}
    assert list(steps) == ["machine", "cuda-tests", "train", "train-cpu", "pooling"]
    for s in steps.values():
        assert s["status"] == "passed" and 0 < s["wall_s"] <= s["timeout_s"], s
        assert f"{s['name']:<11} passed" in text
    m = rep["machine"]
    assert m["jtsm_path"].startswith(str(tmp_path))  # the installed copy, not the checkout
    assert m["optional"] == {"pycocotools": False, "pyspng": bool(spng),
                             "opencv-contrib-python": False}
    # the CPU twin of the CUDA tests ran on proposals made without cv2.ximgproc
    t = rep["cuda_tests"]
    assert t["passed"] >= 1 and t["failed"] == t["errors"] == 0 and t["skipped"] >= 5
    train = rep["train"]
    assert len(train) == 16 and {r["precision"] for r in train} == {"fp32", "bf16"}
    assert all(r["images_per_s"] > 0 and r["peak_mb"] > 0 and r["mean_on_cells"] > 1
               for r in train)
    assert len(rep["bf16_vs_fp32"]) == 8
    assert len(rep["train_cpu"]) == 1 and rep["gpu_cpu"] is None  # no GPU: no ratio
    assert {r["method"] for r in rep["pooling"]} == {"moi", "moi-tps", "tv-roipool",
                                                     "tv-roialign"}
    assert "moi-tps" in text and "bf16 vs fp32" in text


@pytest.mark.slow
def test_install_step_without_setuptools_runs_the_checkout(tmp_path):
    """A node Python with no setuptools to build jtsm: the checkout itself is put on the path,
    with ``jtsm_plugins`` and a ``jtsm`` command beside it."""
    py = node_python(tmp_path, leave_out={"setuptools"})
    target = tmp_path / "target"
    target.mkdir()
    res = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--install-into",
                          str(target)], capture_output=True, text=True,
                         env=_node_env(tmp_path) | {"PYTHON": str(py)}, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = json.loads((target / ".install.json").read_text())
    assert rec == {"status": "passed", "mode": "source-tree", "installed": "",
                   "missing": "pycocotools pyspng"}
    assert (target / "jtsm_plugins").resolve() == ROOT / "plugins"
    res = subprocess.run([str(target / "bin" / "jtsm"), "--help"], capture_output=True,
                         text=True, env=_node_env(tmp_path) | {
                             "PYTHONPATH": f"{target}:{ROOT}"}, cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and "Usage: jtsm" in res.stdout, res.stderr

