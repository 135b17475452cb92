"""File I/O shared by every stage: atomic writes, safe paths, JSON and image reading.

Every output is written to a temporary name in the destination folder and renamed, so a killed
process never leaves a half-written file; readers raise :class:`DataError` naming the file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jtsm.errors import DataError, JtsmError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "JsonListWriter",
    "make_folder",
    "check_png",
    "pixel_limit",
    "max_image_side",
    "decode_image",
    "read_image",
    "read_image_and_size",
    "read_image_size",
    "apply_orientation",
    "DuplicateKeyError",
    "parse_json",
    "read_json",
    "safe_join",
    "unique_keys",
    "write_error",
    "write_png",
]

#: Images whose long side exceeds this many pixels are downscaled on read (area interpolation) so
#: that it is this long; the environment variable ``JTSM_MAX_IMAGE_SIDE`` overrides it.
MAX_SIDE = 4096

#: No image whose decoding needs more pixels than this is decoded (a decompression bomb can
#: announce 50000x50000 pixels in a few kB); JPEGs over it are decoded at 1/2, 1/4 or 1/8 scale
#: when that fits. ``JTSM_MAX_IMAGE_PIXELS`` overrides it.
MAX_PIXELS = 1 << 26  # 64 Mpx: 192 MB as RGB 8-bit

def _umask() -> int:
    """The process's umask, read without changing it (``/proc``), or by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _new_temp(path: Path, suffix: str) -> tuple[int, Path]:
    """A temporary file beside ``path`` whose mode follows the umask (``mkstemp`` makes 0600,
    which the rename would give the output); an OS error names ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp",
                                   dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:  # pragma: no cover - file systems without modes
        pass
    return fd, Path(tmp)


def write_error(path: str | os.PathLike[str], exc: BaseException) -> JtsmError:
    """A one-line error for a failed write that names the file (disk full, no permission)."""
    text = str(exc).strip()
    why = getattr(exc, "strerror", None) or (text.splitlines()[0][:160] if text else "") \
        or type(exc).__name__
    return JtsmError(f"{path}: cannot write ({why})")


def make_folder(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` (and its parents) when missing; an OS error (no permission, a
    read-only file system, a file in the way) raises :class:`JtsmError` naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, FileExistsError):
            why = "a file of that name is in the way"
        raise JtsmError(f"{path}: cannot create the folder ({why})") from None
    return path


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    On an exception the temporary file is removed and ``path`` is untouched; an ``OSError``
    (disk full, no permission) becomes a :class:`JtsmError` naming ``path``. The file's mode
    follows the umask (0644 under umask 022), as a plain ``open`` would give it.
    """
    path = Path(path)
    fd, tmp_path = _new_temp(path, suffix)
    os.close(fd)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except OSError as exc:
            raise write_error(path, exc) from None
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


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one text line to ``path`` (a log, a metrics file), its folder made if needed;
    a failed write (disk full) raises :func:`write_error` naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
    except OSError as exc:
        raise write_error(path, exc) from None


class JsonListWriter:
    """A JSON list written one item at a time to a temporary file, renamed onto ``path`` by
    :meth:`close`: constant memory for long result lists, and no partial file after a kill.

    Use as a context manager; on an exception the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        fd, self._tmp = _new_temp(self.path, ".tmp")
        self._f = os.fdopen(fd, "w", encoding="utf-8")
        self._write("[")
        self.count = 0

    def _write(self, text: str) -> None:
        try:
            self._f.write(text)
        except OSError as exc:
            self.abort()
            raise write_error(self.path, exc) from None

    def add(self, item: Any) -> None:
        self._write(("," if self.count else "") + json.dumps(item))
        self.count += 1

    def extend(self, items: Any) -> None:
        for item in items:
            self.add(item)

    def close(self) -> None:
        self._write("]")
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise write_error(self.path, exc) from None

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __del__(self) -> None:  # an exception left it open: remove the temporary file
        if getattr(self, "_f", None) is not None and not self._f.closed:
            self.abort()

    def __enter__(self) -> JsonListWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DuplicateKeyError(ValueError):
    """A JSON object gives one key twice (:func:`unique_keys`); ``key`` names it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} is given twice in one object (JSON would keep only the "
                         "last one's value)")
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of every JSON reader: the object as a dict, a key given twice
    refused (:class:`DuplicateKeyError`) where ``json`` would silently keep the last value."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DuplicateKeyError(k)
            seen.add(k)
    return d


def parse_json(data: bytes | str, where: str | os.PathLike[str]) -> Any:
    """Parse JSON text read from ``where`` (a file name, for the message).

    Raises:
        DataError: ``<where>: malformed JSON (...)`` or ``<where>: key 'id' is given twice in
            one object (...)``.
    """
    try:
        return json.loads(data, object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise DataError(f"{where}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: malformed JSON ({exc})") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file; a missing or malformed file, or an object that gives a key twice,
    raises :class:`DataError` naming it (:func:`parse_json`)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a JSON file") from None
    return parse_json(data, path)


#: The longest file or folder name (one part of a path) file systems take, in bytes.
NAME_MAX = 255


def safe_join(root: str | os.PathLike[str], name: str) -> Path:
    """``root / name``, refusing names that are absolute or escape ``root`` (``..``, links),
    and names with a part longer than :data:`NAME_MAX` bytes (which no file can have)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DataError(f"invalid file name {name!r}")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"file name {name!r} is absolute; it must be relative to {root}")
    for part in name.replace("\\", "/").split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > NAME_MAX:
            shown = f"{name[:60]!r}..." if len(name) > 60 else repr(name)
            raise DataError(f"file name {shown} has a part of {size} bytes; a file system takes "
                            f"{NAME_MAX} at most")
    root_r = Path(root).resolve()
    full = (root_r / name).resolve()
    if full != root_r and root_r not in full.parents:
        raise DataError(f"file name {name!r} escapes the folder {root}")
    return full


def _on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``colour`` (uint8 ``(H, W, C)``) composited over white by ``alpha`` (uint8 ``(H, W)``,
    255 opaque): ``round((c a + 255 (255 - a)) / 255)`` per channel, in 16-bit integers (no
    float copy of a large image)."""
    a = alpha.astype(np.uint16)[:, :, None]
    out = colour.astype(np.uint16) * a
    out += 255 * (255 - a) + 127  # at most 255 * 255 + 127: fits 16 bits
    out //= 255
    return out.astype(np.uint8)


def _to_rgb_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    """Convert what OpenCV decoded (BGR order) to RGB uint8 ``(H, W, 3)``.

    An alpha channel (BGRA, and grey + alpha, which OpenCV decodes as BGRA) is composited over
    white, as a viewer shows a transparent image on a page: a transparent pixel reads as
    ``(255, 255, 255)``, not as whatever colour its invisible pixel stores. 16-bit images are
    reduced to 8 bits first (alpha too: an error of at most 1 per channel).
    """
    if img.dtype == np.uint16:  # round(x / 257), without a float copy of a large image
        img = cv2.convertScaleAbs(img, alpha=1 / 257.0)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(img * 255.0, 0, 255).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"{path}: unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.ndim == 3 and img.shape[2] in (2, 4):  # with alpha: over white
        alpha = img[:, :, -1]
        if img.shape[2] == 2:
            rgb = np.repeat(img[:, :, :1], 3, axis=2)
        else:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        return rgb if alpha.min() == 255 else _on_white(rgb, alpha)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise DataError(f"{path}: unsupported image shape {img.shape}")


def _env_limit(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        raise DataError(f"environment variable {name}={value!r}: expected an integer") from None
    if n < 1:
        raise DataError(f"environment variable {name}={value!r}: must be at least 1")
    return n


def max_image_side() -> int:
    """The longest image side read at full size: :data:`MAX_SIDE`, or ``JTSM_MAX_IMAGE_SIDE``
    (validated: a value that is not a positive integer names the variable)."""
    return _env_limit("JTSM_MAX_IMAGE_SIDE", MAX_SIDE)


def pixel_limit() -> int:
    """Pixels an image may have to be decoded (and written) at full size: ``MAX_PIXELS`` or
    ``JTSM_MAX_IMAGE_PIXELS``."""
    return _env_limit("JTSM_MAX_IMAGE_PIXELS", MAX_PIXELS)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(data: np.ndarray | bytes, path: str | os.PathLike[str]) -> None:
    """Check a PNG's chunk structure (lengths, CRCs, final ``IEND``) before decoding it.

    libpng reports a truncated or damaged file on stderr by itself, which would garble the
    one-line error; checked here first, the fault is a :class:`DataError` naming the file.
    Bytes that are not a PNG pass (another decoder deals with them).
    """
    buf = memoryview(data).cast("B")
    if bytes(buf[:8]) != _PNG_SIGNATURE:
        return
    pos, n = 8, len(buf)
    while True:
        if pos + 12 > n:
            raise DataError(f"{path}: truncated PNG (no IEND chunk)")
        length = int.from_bytes(buf[pos:pos + 4], "big")
        kind = bytes(buf[pos + 4:pos + 8])
        end = pos + 12 + length
        if end > n:
            name = kind.decode("latin-1")
            raise DataError(f"{path}: truncated PNG (chunk {name!r} cut short)")
        if zlib.crc32(buf[pos + 4:pos + 8 + length]) != int.from_bytes(buf[end - 4:end], "big"):
            name = kind.decode("latin-1")
            raise DataError(f"{path}: corrupt PNG (CRC error in chunk {name!r})")
        if kind == b"IEND":
            return
        pos = end


def _silence_opencv() -> None:
    """OpenCV logs failed decodes on stderr; the caller raises a one-line error instead."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass


_silence_opencv()


def decode_image(data: np.ndarray, path: str | os.PathLike[str],
                 flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """``cv2.imdecode`` of a file's bytes; a damaged file raises :class:`DataError` naming it."""
    if data.size == 0:
        raise DataError(f"{path}: empty file")
    check_png(data, path)
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise DataError(f"{path}: cannot decode image ({first[:120]})") from None
    if img is None:
        raise DataError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return img


#: EXIF orientation -> how to turn the stored pixels into what a viewer shows (TIFF/EXIF tag
#: 0x0112): ``(transpose first, then rotate k quarter turns anticlockwise, then flip left-right)``.
_ORIENT = {1: (False, 0, False), 2: (False, 0, True), 3: (False, 2, False), 4: (False, 2, True),
           5: (True, 0, False), 6: (False, 3, False), 7: (True, 2, False), 8: (False, 1, False)}


def _header(data: np.ndarray) -> tuple[int, int, str, int] | None:
    """``(height, width, format, orientation)`` from the file header (no pixel decoding), or
    ``None`` when PIL does not know the format. The size is the stored one; ``orientation`` is
    the EXIF orientation (1-8, 1 when absent or invalid)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # sizes are checked here, against jtsm's own limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(memoryview(data).cast("B"))) as im:
                w, h = im.size
                tags = getattr(im, "tag_v2", None)
                if tags is not None and 256 in tags and 257 in tags:  # TIFF: the stored size
                    w, h = int(tags[256]), int(tags[257])  # (PIL may report it turned)
                try:
                    o = int(im.getexif().get(0x0112, 1))
                except Exception:  # noqa: BLE001 - a damaged EXIF block: shown unrotated
                    o = 1
                return int(h), int(w), str(im.format or ""), (o if o in _ORIENT else 1)
    except Exception:  # noqa: BLE001 - unknown to PIL: OpenCV may still decode it
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (``(H, W, ...)``) turned as a viewer shows a file with this EXIF orientation
    (1-8; 5-8 swap height and width)."""
    transpose, k, flip = _ORIENT.get(int(orientation), (False, 0, False))
    if transpose:
        img = np.swapaxes(img, 0, 1)
    if k:
        img = np.rot90(img, k)
    if flip:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _check_jpeg_complete(data: np.ndarray, path: Path, height: int, width: int) -> None:
    """A JPEG must hold enough image data for the size its header declares and reach its
    end-of-image marker: libjpeg decodes a cut file (or a few bytes claiming 20000x20000
    pixels) as made-up grey rows with only a warning, which would train on invented pixels.

    The size bound: Huffman coding spends at least one bit on every 8x8 block of the
    fullest-sampled component, so its scans hold at least ``(H / 8) (W / 8) / 8`` bytes
    (arithmetic-coded JPEGs, which can go below it, are not bounded).
    """
    buf = memoryview(data).cast("B")
    n, pos, sof = len(buf), 2, 0
    while pos + 4 <= n:  # marker segments up to the first scan (EXIF thumbnails hold FFD9)
        if buf[pos] != 0xFF:
            break
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 2
            continue
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            sof = marker
        length = (buf[pos + 2] << 8) | buf[pos + 3]
        if marker == 0xDA:  # start of scan: entropy-coded data follows, FF always stuffed
            pos += 2 + length
            break
        pos += 2 + length
    else:
        raise DataError(f"{path}: truncated JPEG (cut before its image data)")
    need = (height // 8) * (width // 8) // 8
    if sof in (0xC0, 0xC1, 0xC2) and n - pos < need:
        raise DataError(f"{path}: JPEG header says {width}x{height} pixels but the file holds "
                        f"{n - pos} bytes of image data (at least {need} needed): truncated or "
                        "damaged")
    rest = data[pos:]
    hits = np.flatnonzero(rest[:-1] == 0xFF)
    if not (hits.size and np.any(rest[hits + 1] == 0xD9)):
        raise DataError(f"{path}: truncated JPEG (no end-of-image marker); the file was cut "
                        "short, re-copy it")


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such image") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an image") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    if data.size == 0:
        raise DataError(f"{path}: empty file")
    return data


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image as a viewer shows it (EXIF orientation applied), read
    from the header alone (the pixels are decoded only for formats PIL cannot size)."""
    path = Path(path)
    data = _read_bytes(path)
    header = _header(data)
    if header is None:
        h, w = read_image_and_size(path)[1]
        return h, w
    h, w, _, o = header
    if h < 1 or w < 1:
        raise DataError(f"{path}: image header says {w}x{h} pixels")
    return (w, h) if o >= 5 else (h, w)


_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def read_image_and_size(path: str | os.PathLike[str], max_side: int | None = None
                        ) -> tuple[np.ndarray, tuple[int, int]]:
    """Like :func:`read_image`; also returns the file's own ``(height, width)`` as a viewer
    shows it (EXIF orientation applied)."""
    path = Path(path)
    data = _read_bytes(path)
    side = max_side or max_image_side()
    limit = pixel_limit()
    flags = cv2.IMREAD_UNCHANGED
    header = _header(data)
    orientation = 1
    if header is not None:
        h, w, fmt, orientation = header
        if h < 1 or w < 1:
            raise DataError(f"{path}: image header says {w}x{h} pixels")
        k = 1
        if fmt in ("JPEG", "MPO"):
            _check_jpeg_complete(data, path, h, w)
            # libjpeg decodes at 1/k scale directly: memory shrinks by k^2
            k = next((k for k in (8, 4, 2) if max(h, w) // k >= side), 1)
            if k > 1:
                flags = _REDUCED[k] | cv2.IMREAD_IGNORE_ORIENTATION
        if h * w > limit * k * k:
            raise DataError(
                f"{path}: image is {w}x{h} ({h * w / 1e6:.0f} Mpx), over the decoding limit of "
                f"{limit / 1e6:.0f} Mpx (set JTSM_MAX_IMAGE_PIXELS to raise it)")
    else:  # no size known before decoding: the pixel limit could not hold
        raise DataError(f"{path}: not an image format jtsm reads (JPEG, PNG, TIFF, BMP, WebP, "
                        "PPM/PGM), or a damaged header")
    # IMREAD_UNCHANGED and IGNORE_ORIENTATION leave EXIF alone (OpenCV's TIFF reader alone
    # turns the pixels itself): turned here, so every format ends up as a viewer shows it
    turn = 1 if header is not None and header[2] == "TIFF" else orientation
    img = apply_orientation(_to_rgb_uint8(decode_image(data, path, flags), path), turn)
    del data
    if header is not None:
        h0, w0 = (header[1], header[0]) if orientation >= 5 else (header[0], header[1])
    else:
        h0, w0 = img.shape[:2]
    h, w = img.shape[:2]
    if max(h, w) > side:
        s = side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img), (int(h0), int(w0))


def read_image(path: str | os.PathLike[str], max_side: int | None = None) -> np.ndarray:
    """Read an image as RGB ``uint8`` ``(H, W, 3)``, turned as a viewer shows it (EXIF
    orientation applied, for every format).

    Greyscale, 16-bit and palette images are converted; transparent ones (RGBA, grey +
    alpha, palette with transparency) are composited over white. A zero-byte,
    truncated (PNG or JPEG) or undecodable file raises :class:`DataError` naming it. An image
    whose long side is over ``max_side`` (default :data:`MAX_SIDE`, or ``JTSM_MAX_IMAGE_SIDE``)
    is downscaled (area interpolation) so that its long side is ``max_side``; memory stays
    bounded: the header's size is checked before decoding against :data:`MAX_PIXELS`
    (``JTSM_MAX_IMAGE_PIXELS``), for every format, and large JPEGs are decoded at a reduced
    scale.
    """
    return read_image_and_size(path, max_side)[0]


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an RGB (or single-channel) ``uint8`` array as PNG, atomically."""
    arr = np.asarray(rgb)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise DataError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
