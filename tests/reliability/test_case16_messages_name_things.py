"""Case 16: messages that named nothing. ``--set solver.max_iter=inf|nan|1e400`` printed
``OverflowError``/``ValueError`` without the key; ``isthing: "yes"`` in a dataset's categories
``invalid literal for int()``; a ``presence.json`` of the wrong shape an ``AttributeError``; a
tags-file name over 255 bytes an ``OSError`` without its line; a read-only ``--out`` of mine or
refine a raw ``OSError``; a full disk in mine ``write failed`` (the documented ``disk full?``
missing); ``_base_ = "nope"`` did not name the including file; a 1500-deep ``_base_`` chain a
``RecursionError``; and ``jtsm config show`` wrote TOML it could not read back (a newline in a
string). Each is now one line naming the key, file or line, exit 1, through the CLI."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY, jtsm

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SETS = ["-q", *[a for t in TINY for a in ("--set", t)]]


def _one_line_error(code: int, text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), text
    assert "Traceback" not in text and "OSError" not in text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-inf"])
def test_an_integer_key_set_to_inf_or_nan_is_named(value):
    code, text = jtsm("config", "show", "--set", f"solver.max_iter={value}")
    _one_line_error(code, text, "config value solver.max_iter=", "expected an integer")


def test_isthing_that_is_not_0_or_1_names_the_file_and_category(tmp_path, rel_data):
    d = json.loads((rel_data / "annotations/panoptic_train.json").read_text())
    d["categories"][2]["isthing"] = "yes"
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(d))
    code, text = jtsm("mine", "--dataset", bad, "--images", rel_data / "images", "--proposals",
                      rel_data / "props", "--out", tmp_path / "run", *SETS)
    _one_line_error(code, text, f"{bad}: categories[2].isthing must be 0 or 1, got 'yes'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, want", [
    ([0.5, 0.5], 'expected {"thresholds": [...]}'),
    ({"thresholds": [0.5]}, "thresholds, one per class (found 1)"),
    ({"thresholds": "0.5"}, "(found none)"),
    ({"thresholds": ["x"] * 9}, "thresholds[0] ('"),
])
def test_a_presence_file_of_the_wrong_shape_is_named(tmp_path, rel_data, rel_run, content,
                                                    want):
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    classes = len(json.loads((run / "meta.json").read_text())["categories"])
    if isinstance(content, dict) and isinstance(content["thresholds"], list) \
            and len(content["thresholds"]) == 9:
        content = {"thresholds": ["x"] * classes,
                   "classes": json.loads((rel_run / "presence.json").read_text())["classes"]}
    (run / "presence.json").write_text(json.dumps(content))
    code, text = jtsm("predict", "--run", run, "--images", rel_data / "images/val_000000.jpg",
                      "--out", tmp_path / "pred")
    _one_line_error(code, text, f"{run / 'presence.json'}: ", want)


def test_a_tags_file_name_over_255_bytes_names_its_line(tmp_path, rel_data):
    long = "a" * 300 + ".jpg"
    tags = tmp_path / "tags.csv"
    tags.write_text(f"file,tags\ntrain_000000.jpg,dog\n{long},cat\n")
    code, text = jtsm("data", "tags", tags, "--images", rel_data / "images", "--out",
                      tmp_path / "labels.json")
    _one_line_error(code, text, f"{tags}: line 3: file name 'aaaa",
                    "has a part of 304 bytes; a file system takes 255 at most")
    assert not (tmp_path / "labels.json").exists()


def _refuse_mkdir_under(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``os.mkdir`` below ``folder`` fails as in a read-only folder (root ignores modes)."""
    real = os.mkdir

    def mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if Path(path).is_relative_to(folder):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("command", ["mine", "refine"])
def test_an_out_that_cannot_be_created_is_named(tmp_path, rel_data, rel_run, monkeypatch,
                                                command):
    def args(out: Path) -> list[object]:
        if command == "mine":
            return ["mine", "--dataset", rel_data / "annotations/panoptic_train.json",
                    "--images", rel_data / "images", "--proposals", rel_data / "props",
                    "--out", out, *SETS]
        return ["refine", "--run", rel_run, "--pseudo", rel_data / "annotations/"
                "panoptic_train.json", "--images", rel_data / "images", "--out", out, *SETS]

    (tmp_path / "file").write_text("not a folder")
    code, text = jtsm(*args(tmp_path / "file/run"))
    _one_line_error(code, text, f"{tmp_path / 'file/run'}: cannot create the folder "
                                "(Not a directory)")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    _refuse_mkdir_under(monkeypatch, readonly)
    code, text = jtsm(*args(readonly / "run"))
    _one_line_error(code, text, f"{readonly / 'run'}: cannot create the folder "
                                "(Permission denied)")


def test_a_full_disk_in_mine_says_so(tmp_path, rel_data, monkeypatch):
    import torch

    real = torch.save
    # torch's own writer on a full disk: "unexpected pos 704 vs 598" from inline_container.cc
    monkeypatch.setattr(torch, "save", lambda obj, _f: real(obj, "/dev/full"))
    run = tmp_path / "run"
    code, text = jtsm("mine", "--dataset", rel_data / "annotations/panoptic_train.json",
                      "--images", rel_data / "images", "--proposals", rel_data / "props",
                      "--out", run, *SETS)
    _one_line_error(code, text, f"{run}", ".pt: cannot write (write failed (disk full?))")
    assert "inline_container" not in text


def test_a_checkpoint_on_a_full_disk_reports_no_space(tmp_path, monkeypatch):
    """Written through a Python file, a full disk's own error comes through (ENOSPC)."""
    import torch

    from jtsm.errors import JtsmError
    from jtsm.rundir import checkpoint

    monkeypatch.setattr(checkpoint, "open", lambda *_a, **_k: open("/dev/full", "wb"),
                        raising=False)
    with pytest.raises(JtsmError, match=r"m\.pt: cannot write \(No space left on device\)"):
        checkpoint.save_checkpoint(tmp_path / "m.pt", {"w": torch.zeros(1000)})
    assert not list(tmp_path.iterdir())


def test_a_missing_base_names_the_file_that_includes_it(tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text('_base_ = "nope"\n[solver]\nlr = 0.1\n')
    code, text = jtsm("config", "show", "--config", cfg)
    _one_line_error(code, text, f"{cfg}: _base_ 'nope': neither a file nor a preset")
    cfg.write_text('_base_ = "sub/base.toml"\n')
    code, text = jtsm("config", "show", "--config", cfg)
    _one_line_error(code, text, f"{cfg}: _base_ 'sub/base.toml': config file",
                    "base.toml not found")


def test_a_deep_base_chain_is_refused_not_a_recursion_error(tmp_path):
    for i in range(1500):
        (tmp_path / f"c{i}.toml").write_text(f'_base_ = "c{i + 1}.toml"\n')
    (tmp_path / "c1500.toml").write_text("seed = 3\n")
    code, text = jtsm("config", "show", "--config", tmp_path / "c0.toml")
    _one_line_error(code, text, "c0.toml: _base_ files build on each other more than 32 deep")
    assert "RecursionError" not in text


@pytest.mark.parametrize("value", ['"line one\\nline two"', '"tab\\there \\"quoted\\" \\\\ '
                                                          'bell\\u0007 é"'])
def test_config_show_writes_toml_that_reads_back(tmp_path, value):
    code, shown = jtsm("config", "show", "--set", f"proposals={value}")
    assert code == 0, shown
    assert tomllib.loads(shown)["proposals"] == json.loads(value)
    saved = tmp_path / "shown.toml"
    saved.write_text(shown)
    code, again = jtsm("config", "show", "--config", saved, "--json")
    assert code == 0, again
    code, direct = jtsm("config", "show", "--set", f"proposals={value}", "--json")
    assert json.loads(again) == json.loads(direct)
