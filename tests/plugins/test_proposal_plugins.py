"""Proposal-generator plugins: the three built-ins and the example third-party package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from jtsm import plugins
from jtsm.errors import DataError
from jtsm.structures import ProposalSet

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "jtsm-slic-plugin"


def _image(h: int = 40, w: int = 56) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2 :] = (200, 40, 40)
    img[h // 4 : h // 2, 5:20] = (30, 200, 30)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def test_builtin_generators_registered_and_produce_masks():
    gens = plugins.proposal_generators()
    assert {"selective-search", "felzenszwalb", "mcg"} <= set(gens)
    img = _image()
    for name in ["selective-search", "felzenszwalb"]:
        ps = gens[name].generate(img, image_path=None, max_proposals=100)
        assert isinstance(ps, ProposalSet) and ps.image_size == (40, 56) and len(ps) > 3
        assert gens[name].plugin == name and gens[name].description
    ss = gens["selective-search"].generate(img, mode="single", seed=1)
    assert len(ss) >= 3
    small = gens["selective-search"].generate(img, max_side=28)  # grouped at 20x28
    assert small.image_size == (40, 56) and np.all(small.areas() > 0)
    import cv2

    from jtsm.proposals.selective_search import selective_search

    ref = selective_search(cv2.resize(img, (28, 20), interpolation=cv2.INTER_AREA), "fast", None)
    up = ref.resize(40, 56)
    assert len(small) == len(up)
    assert np.array_equal(small.masks(range(5)), up.masks(range(5)))


def test_mcg_plugin_finds_files_by_image_name(tmp_path):
    gen = plugins.get_proposal_generator("mcg")
    spx = np.ones((40, 56), np.uint16)
    spx[:, 28:] = 2
    cell = np.empty((2, 1), object)
    cell[0, 0] = np.array([[1]], np.uint16)
    cell[1, 0] = np.array([[1, 2]], np.uint16)
    scipy.io.savemat(tmp_path / "photo.mat",
                     {"superpixels": spx, "labels": cell, "scores": np.array([[0.2], [0.9]])})
    ps = gen.generate(_image(), image_path=Path("imgs/photo.jpg"), mcg_dir=str(tmp_path))
    assert len(ps) == 2 and ps.areas().tolist() == [40 * 56, 40 * 28]
    with pytest.raises(DataError, match="other.mat"):
        gen.generate(_image(), image_path="imgs/other.jpg", mcg_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"56x40 but imgs/photo.jpg is 60x40"):
        gen.generate(_image(40, 60), image_path="imgs/photo.jpg", mcg_dir=str(tmp_path))
    with pytest.raises(DataError, match="mcg_dir"):
        gen.generate(_image(), image_path="imgs/photo.jpg")


def test_load_plugins_env_restricts_builtins(monkeypatch):
    monkeypatch.setenv("JTSM_LOAD_PLUGINS", "felzenszwalb")
    plugins.reset()
    assert set(plugins.proposal_generators()) == {"felzenszwalb"}


def test_example_slic_package_installs_and_is_found(tmp_path):
    """pip-install the example package into a private folder; a fresh interpreter sees it."""
    target = tmp_path / "site"
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ into the source tree
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import json, numpy as np\n"
        "from jtsm.plugins import proposal_generators\n"
        "g = proposal_generators()['slic']\n"
        "yy, xx = np.mgrid[0:48, 0:64]\n"
        "img = np.dstack([xx * 4, yy * 5, (xx + yy) * 2]).astype(np.uint8)\n"
        "ps = g.generate(img, image_path=None, scales='8,20', max_proposals=5)\n"
        "print(json.dumps({'plugin': g.plugin, 'n': len(ps), 'size': ps.image_size}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["plugin"] == "slic" and out["n"] > 8 and out["size"] == [48, 64]
    jtsm_bin = Path(sys.executable).with_name("jtsm")
    r = subprocess.run([str(jtsm_bin), "plugins", "--json"], env=env, capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = {p["name"]: p for p in json.loads(r.stdout)}
    assert "slic" in listed and listed["slic"]["version"] == "0.1.0"
