"""File I/O shared by every stage: atomic writes, safe paths, JSON and image reading.

Every output is written to a temporary name in the destination folder and renamed, so a killed
process never leaves a half-written file; readers raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jtsm.errors import DataError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_image",
    "read_json",
    "safe_join",
    "write_png",
]

#: Images larger than this (pixels on the long side) are rejected by :func:`read_image` unless
#: the caller asks for a downscale.
MAX_SIDE = 20000


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode("utf-8"))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file; a missing or malformed file raises :class:`DataError` naming it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed JSON ({exc})") from None


def safe_join(root: str | os.PathLike[str], name: str) -> Path:
    """``root / name``, refusing names that are absolute or escape ``root`` (``..``, links)."""
    if not isinstance(name, str) or not name:
        raise DataError(f"invalid file name {name!r}")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"file name {name!r} is absolute; it must be relative to {root}")
    root_r = Path(root).resolve()
    full = (root_r / name).resolve()
    if full != root_r and root_r not in full.parents:
        raise DataError(f"file name {name!r} escapes the folder {root}")
    return full


def _to_rgb_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    """Convert what OpenCV decoded (BGR order) to RGB uint8 ``(H, W, 3)``."""
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0, 0, 255).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise DataError(f"{path}: unsupported image shape {img.shape}")


def read_image(path: str | os.PathLike[str], max_side: int | None = None) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``(H, W, 3)``.

    Greyscale, RGBA, 16-bit and palette images are converted. A zero-byte, truncated or
    undecodable file raises :class:`DataError` naming it. With ``max_side``, larger images are
    downscaled (area interpolation) so the long side is ``max_side``.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an image") from None
    if data.size == 0:
        raise DataError(f"{path}: empty file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: cannot decode image (corrupt or unsupported format)")
    img = _to_rgb_uint8(img, path)
    h, w = img.shape[:2]
    limit = max_side or MAX_SIDE
    if max(h, w) > limit:
        if max_side is None:
            raise DataError(f"{path}: image is {w}x{h}, larger than {MAX_SIDE} px on a side")
        s = limit / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an RGB (or single-channel) ``uint8`` array as PNG, atomically."""
    arr = np.asarray(rgb)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
