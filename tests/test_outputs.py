"""Where a command may write (:mod:`jtsm.rundir.outputs`): apart from its inputs, into a folder it
owns, never over or away with a file it did not write, and a move cut half-way leaves every
file it wrote recognisable."""

from __future__ import annotations

import json
import os

import pytest

from jtsm.errors import JtsmError
from jtsm.rundir.outputs import OutputFolder, check_apart, check_replace_file


def _write(folder: OutputFolder, files: dict[str, bytes]) -> None:
    with folder.staged() as stage:
        for name, data in files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(data)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("out, rel", [("in", "is"), ("in/sub", "is inside"), (".", "contains")])
def test_check_apart_names_how_out_meets_an_input(tmp_path, out, rel):
    (tmp_path / "in").mkdir()
    with pytest.raises(JtsmError, match=f"^--out {tmp_path / out} {rel} the input --images "):
        check_apart(tmp_path / out, {"--images": tmp_path / "in", "--gt": None})
    check_apart(tmp_path / "elsewhere", {"--images": [tmp_path / "in", tmp_path / "x.json"]})


def test_a_cut_move_leaves_every_file_recognisable(tmp_path, monkeypatch):
    out = tmp_path / "o"
    _write(OutputFolder.claim(out, "viz", ["a.png", "b/c.png"]), {"a.png": b"1", "b/c.png": b"2"})
    real, calls = os.replace, []

    def cut(src, dst):  # the record is written, one file moved, the next fails (a kill)
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", cut)
    new = {"a.png": b"11", "b/c.png": b"22", "d.png": b"33"}
    with pytest.raises(JtsmError, match="cannot write"):
        _write(OutputFolder.claim(out, "viz", list(new)), new)
    monkeypatch.setattr(os, "replace", real)
    assert not (tmp_path / ".o.partial").exists()
    # the files on disk are a mix of the two runs, and all of them are its own
    assert (out / "a.png").read_bytes() == b"11" and (out / "b/c.png").read_bytes() == b"2"
    folder = OutputFolder.claim(out, "viz", list(new))
    assert set(folder.own) == set(_files(out)) - {".jtsm-viz"}
    _write(folder, new)
    assert _files(out) == {**new, ".jtsm-viz": (out / ".jtsm-viz").read_bytes()}
    assert set(json.loads((out / ".jtsm-viz").read_text())["files"]) == set(new)


def test_files_it_did_not_write_are_kept_or_refused(tmp_path):
    out = tmp_path / "o"
    _write(OutputFolder.claim(out, "viz", ["a.png", "b.png"]), {"a.png": b"1", "b.png": b"2"})
    (out / "b.png").write_bytes(b"changed by hand")
    (out / "notes.txt").write_bytes(b"mine")
    _write(OutputFolder.claim(out, "viz", ["c.png"]), {"c.png": b"3"})  # a.png was its own
    assert _files(out).keys() == {".jtsm-viz", "b.png", "c.png", "notes.txt"}
    with pytest.raises(JtsmError, match="b.png: not written by jtsm viz"):
        OutputFolder.claim(out, "viz", ["b.png"])
    (out / "b.png").unlink()
    (out / "b.png").mkdir()
    with pytest.raises(JtsmError, match="a folder where an output file goes"):
        OutputFolder.claim(out, "viz", ["b.png"], overwrite=True)
    with pytest.raises(JtsmError, match="a file where the output .* needs a folder"):
        OutputFolder.claim(out, "viz", ["notes.txt/x.png"], overwrite=True)


def test_check_replace_file(tmp_path):
    f = tmp_path / "labels.json"
    check_replace_file(f, False, lambda p: "was not written by it")  # absent
    f.write_text("{}")
    with pytest.raises(JtsmError, match="labels.json: exists and was not written by it; "
                                        "--overwrite replaces it"):
        check_replace_file(f, False, lambda p: "was not written by it")
    check_replace_file(f, False, lambda p: None)
    check_replace_file(f, True, lambda p: "was not written by it")
    with pytest.raises(JtsmError, match="is a folder"):
        check_replace_file(tmp_path, True, lambda p: None)
