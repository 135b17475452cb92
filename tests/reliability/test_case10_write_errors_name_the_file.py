"""Case 10: write failures (disk full) printed ``OSError: [Errno 27] File too large`` or a torch
``inline_container.cc`` message without the file. Now every write error names the file."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from jtsm.errors import JtsmError
from jtsm.fileio import JsonListWriter, atomic_write_bytes, atomic_write_json, write_png


def _full(*_a, **_k):
    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))


def test_atomic_writes_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", _full)
    for write, name in ((lambda p: atomic_write_bytes(p, b"x"), "a.bin"),
                        (lambda p: atomic_write_json(p, {"a": 1}), "b.json"),
                        (lambda p: write_png(p, np.zeros((4, 4, 3), np.uint8)), "c.png")):
        with pytest.raises(JtsmError, match=rf"{name}: cannot write \(File too large\)"):
            write(tmp_path / name)
        assert not (tmp_path / name).exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    w = JsonListWriter(tmp_path / "list.json")
    w.add({"a": 1})
    with pytest.raises(JtsmError, match=r"list.json: cannot write"):
        w.close()


def test_checkpoint_write_failure_names_the_file(tmp_path, monkeypatch):
    from jtsm.rundir import checkpoint

    real = torch.save
    # torch writing onto a full disk: its own C++ message, which names no file
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, _path: real(obj, "/dev/full"))
    with pytest.raises(JtsmError, match=r"model_final.pt: cannot write") as e:
        checkpoint.save_checkpoint(tmp_path / "model_final.pt", {"w": torch.zeros(1000)})
    assert "inline_container" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_appended_logs_name_the_file(tmp_path):
    """``metrics.jsonl`` and ``log.txt`` are appended line by line; a full disk names them."""
    from jtsm.fileio import append_line

    append_line(tmp_path / "run" / "log.txt", "one")
    append_line(tmp_path / "run" / "log.txt", "two\n")
    assert (tmp_path / "run" / "log.txt").read_text() == "one\ntwo\n"
    os.symlink("/dev/full", tmp_path / "metrics.jsonl")
    with pytest.raises(JtsmError, match=r"metrics.jsonl: cannot write \(No space left"):
        append_line(tmp_path / "metrics.jsonl", '{"loss": 1.0}')
