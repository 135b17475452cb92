"""Case 8: a proposal store resumed with another ``--method``/``--max`` mixed both silently;
corrupt or other-size proposal files were found only after training. Now the store records
its job and refuses another one, and every file is checked before a run writes anything."""

from __future__ import annotations

import shutil

from conftest import TINY, jtsm


def test_store_refuses_another_method_or_max(tmp_path, rel_data):
    out = tmp_path / "props"
    base = ["proposals", "--images", rel_data / "images", "--out", out, "--workers", 1, "-q"]
    code, text = jtsm(*base, "--method", "felzenszwalb", "--max", 50)
    assert code == 0, text
    files = sorted(p.name for p in out.glob("*.npz"))
    code, text = jtsm(*base, "--method", "felzenszwalb", "--max", 60)
    assert code == 1 and "max 50 vs 60" in text and "--overwrite" in text
    code, text = jtsm(*base, "--method", "selective-search", "--max", 50)
    assert code == 1 and "method 'felzenszwalb' vs 'selective-search'" in text
    code, text = jtsm(*base, "--method", "felzenszwalb", "--max", 50)  # the same job resumes
    assert code == 0 and "0 computed" in text, text
    code, text = jtsm(*base, "--method", "felzenszwalb", "--max", 60, "--overwrite")
    assert code == 0 and "--overwrite: replacing the proposal store" in text
    assert sorted(p.name for p in out.glob("*.npz")) == files


def _mine(rel_data, props, out):
    sets = [a for s in TINY for a in ("--set", s)]
    return jtsm("mine", "--dataset", rel_data / "annotations/panoptic_train.json",
                "--images", rel_data / "images", "--proposals", props, "--out", out, "-q",
                *sets)


def test_corrupt_or_other_size_files_are_found_before_training(tmp_path, rel_data):
    props = tmp_path / "props"
    shutil.copytree(rel_data / "props", props)
    victim = props / "train_000003.jpg.npz"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # cut short
    code, text = _mine(rel_data, props, tmp_path / "run")
    assert code == 1 and "train_000003.jpg.npz" in text and "corrupt" in text
    assert not (tmp_path / "run").exists()  # nothing written, no training
    shutil.copy(props / "train_000001.jpg.npz", victim)  # whole, but another image's
    code, text = _mine(rel_data, props, tmp_path / "run")
    assert code == 1 and "holds the proposals of 'train_000001.jpg'" in text
    assert not (tmp_path / "run").exists()
