"""Makers of bad (and odd but valid) input files for the bad-input and crash-safety tests."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image


def rgb_of(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_variant(src: Path, dst: Path, kind: str) -> Path:
    """``src`` re-saved as a greyscale, RGBA, 16-bit or palette PNG (same size) at ``dst``."""
    rgb = rgb_of(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "grey":
        Image.fromarray(rgb).convert("L").save(dst, format="PNG")
    elif kind == "rgba":
        rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], 2)
        Image.fromarray(rgba, "RGBA").save(dst, format="PNG")
    elif kind == "16bit":
        deep = rgb.astype(np.uint16) * 257
        ok, buf = cv2.imencode(".png", cv2.cvtColor(deep, cv2.COLOR_RGB2BGR))
        assert ok
        dst.write_bytes(buf.tobytes())
    elif kind == "palette":
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(dst, format="PNG")
    else:
        raise ValueError(kind)
    return dst


VARIANTS = ("grey", "rgba", "16bit", "palette")


def make_zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def make_truncated(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_corrupt(path: Path) -> Path:
    """Bytes that are no image at all, under the image's name."""
    path.write_bytes(b"this is not an image\n" * 40)
    return path


def make_damaged_png(path: Path) -> Path:
    """A PNG whose image data has a flipped byte (a CRC error in IDAT)."""
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)
    ok, buf = cv2.imencode(".png", img)
    data = bytearray(buf.tobytes())
    i = data.index(b"IDAT") + 20
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def make_png_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A few-kB PNG whose header announces ``width x height`` RGB pixels (valid chunks; the
    image data holds only the first rows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows)
                     + _chunk(b"IEND", b""))
    return path


def resized(src: Path, dst: Path, height: int, width: int) -> Path:
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    cv2.imwrite(str(dst), cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
    return dst


def evil_checkpoint(path: Path) -> Path:
    """A torch file whose unpickling would run code (``os.system``)."""
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    torch.save({"model": Evil(), "iteration": 1}, path)
    return path


def edit_json(path: Path, fn) -> Path:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))
    return path


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def one_line_error(r: Any, *needles: Any, code: int = 1) -> str:
    """Assert a CliRunner result is one ``Error:`` line on stderr naming every needle, exit
    ``code``, no traceback and not the catch-all message of an unexpected exception."""
    assert r.exit_code == code, (r.exit_code, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("Warning: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.output
    assert "rerun with --debug" not in lines[0], lines[0]  # an exception nobody named
    for n in needles:
        assert str(n) in lines[0], (str(n), lines[0])
    return lines[0]


def ok(r: Any) -> None:
    assert r.exit_code == 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
