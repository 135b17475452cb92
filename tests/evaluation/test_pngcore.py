"""The optional C decoder (``jtsm.evaluation._pngcore``) against libspng, OpenCV and zlib.

PNGs come from Pillow, OpenCV and a writer here that sets every row's filter type, the zlib
level, strategy and window, flush points, IDAT splits, extra chunks and Adam7 interlacing. The
decoder must give the bytes libspng and OpenCV give, decline (None) whatever it does not take,
and never accept a file or stream that the fallback or zlib refuses.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from jtsm.data import coco_panoptic
from jtsm.data.coco_panoptic import read_panoptic_rgb
from jtsm.errors import DataError
from jtsm.evaluation import idmaps, panoptic
from jtsm.evaluation.idmaps import Scratch, pair_runs, png_pair_runs, read_rgb_png
from jtsm.evaluation.panoptic import evaluate_pq
from jtsm.evaluation.synthetic import write_pair_dataset

if os.environ.get("CI"):
    # CI builds with a compiler: an extension that failed to build must fail here, not skip.
    from jtsm.evaluation import _pngcore as pngcore
else:  # a user's install without a C compiler runs the numpy path; these tests do not apply
    pngcore = pytest.importorskip("jtsm.evaluation._pngcore")
spng = pytest.importorskip("pyspng")

SIG = b"\x89PNG\r\n\x1a\n"
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


# --------------------------------------------------------------------------------------------
# A PNG writer that exposes every knob
# --------------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filter_rows(img: np.ndarray, filters: list[int]) -> bytes:
    """PNG-filter an ``(H, W, C)`` uint8 image, row ``y`` with ``filters[y % len(filters)]``."""
    h, w, bpp = img.shape
    x = img.reshape(h, w * bpp).astype(np.int32)
    out = bytearray()
    for y in range(h):
        b = x[y - 1] if y else np.zeros_like(x[y])
        a = np.concatenate([np.zeros(bpp, np.int32), x[y, :-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int32), b[:-bpp]])
        ftype = filters[y % len(filters)]
        if ftype == 0:
            pred = np.zeros_like(a)
        elif ftype == 1:
            pred = a
        elif ftype == 2:
            pred = b
        elif ftype == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        out.append(ftype)
        out += ((x[y] - pred) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def _zlib(raw: bytes, level: int = 6, strategy: int = zlib.Z_DEFAULT_STRATEGY, wbits: int = 15,
          flush_every: int = 0) -> bytes:
    co = zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy)
    if not flush_every:
        return co.compress(raw) + co.flush()
    parts = []
    for i in range(0, len(raw), flush_every):  # sync / full flushes: empty stored blocks
        parts.append(co.compress(raw[i:i + flush_every]))
        parts.append(co.flush(zlib.Z_SYNC_FLUSH if i % 2 else zlib.Z_FULL_FLUSH))
    return b"".join(parts) + co.flush()


def write_png(img: np.ndarray, filters: list[int] | None = None, interlace: bool = False,
              split: int = 0, before: bytes = b"", between: bytes = b"", after: bytes = b"",
              **zkw) -> bytes:
    """An 8-bit RGB / RGBA PNG; ``split`` cuts IDAT into chunks of that many bytes (with an empty
    one first); ``before`` / ``between`` / ``after`` are raw chunks placed around the IDATs."""
    h, w, c = img.shape
    filters = filters or [0, 1, 2, 3, 4]
    if interlace:
        raw = b"".join(_filter_rows(np.ascontiguousarray(img[y0::dy, x0::dx]), filters)
                       for x0, y0, dx, dy in ADAM7 if img[y0::dy, x0::dx].size)
    else:
        raw = _filter_rows(img, filters)
    stream = _zlib(raw, **zkw)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 6, 0, 0, int(interlace))
    if split:
        idat = _chunk(b"IDAT", b"") + b"".join(
            _chunk(b"IDAT", stream[i:i + split]) for i in range(0, len(stream), split))
    else:
        idat = _chunk(b"IDAT", stream)
    if between:  # within the IDAT run: after the first IDAT chunk
        first = _chunk(b"IDAT", stream[:1])
        idat = first + between + _chunk(b"IDAT", stream[1:])
    return SIG + _chunk(b"IHDR", ihdr) + before + idat + after + _chunk(b"IEND", b"")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
def _panoptic_like(rng: np.random.Generator, h: int, w: int, n: int = 12) -> np.ndarray:
    """Blocky segment maps as a panoptic PNG holds them: rectangles of random ids on void."""
    ids = np.zeros((h, w), np.int64)
    for _ in range(n):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        ids[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = rng.integers(
            1, 1 << 24)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:37, 0:53]
    return {
        "panoptic": _panoptic_like(rng, 48, 64),
        "panoptic-odd": _panoptic_like(rng, 33, 29),
        "noise": rng.integers(0, 256, (19, 23, 3), dtype=np.uint8),
        "gradient": np.stack([xx * 5, yy * 7, xx * yy], -1).astype(np.uint8),
        "1x1": np.array([[[1, 2, 3]]], np.uint8),
        "1x9": rng.integers(0, 4, (1, 9, 3), dtype=np.uint8),
        "9x1": rng.integers(0, 4, (9, 1, 3), dtype=np.uint8),
        "rgba": np.dstack([_panoptic_like(rng, 21, 30), rng.integers(0, 256, (21, 30, 1),
                                                                     dtype=np.uint8)]),
        "wide": _panoptic_like(rng, 4, 700),
    }


IMAGES = _images()


def _decode(data: bytes, work: bytearray | None = None) -> np.ndarray | None:
    got = pngcore.decode(data) if work is None else pngcore.decode(data, work)
    if got is None:
        return None
    h, w, rgb = got
    return np.frombuffer(rgb, np.uint8).reshape(h, w, 3)


def _opencv_rgb(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _assert_decodes_as_others(data: bytes, img: np.ndarray) -> None:
    ours = _decode(data)
    assert ours is not None
    assert np.array_equal(ours, img[..., :3])
    assert np.array_equal(ours, spng.load(data, "RGB"))
    assert np.array_equal(ours, _opencv_rgb(data))


# --------------------------------------------------------------------------------------------
# Decoding: the same bytes as libspng and OpenCV
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(IMAGES))
@pytest.mark.parametrize("filters", [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4], [4, 3, 2, 1]])
def test_every_filter_type(name: str, filters: list[int]) -> None:
    img = IMAGES[name]
    _assert_decodes_as_others(write_png(img, filters), img)


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize(
    "strategy", ["DEFAULT_STRATEGY", "FILTERED", "HUFFMAN_ONLY", "RLE", "FIXED"])
def test_every_level_and_strategy(level: int, strategy: str) -> None:
    for name in ("panoptic", "noise", "rgba"):
        img = IMAGES[name]
        data = write_png(img, level=level, strategy=getattr(zlib, f"Z_{strategy}"))
        _assert_decodes_as_others(data, img)


@pytest.mark.parametrize("wbits", [9, 10, 12, 15])
def test_windows_flushes_and_idat_splits(wbits: int) -> None:
    for name in ("panoptic", "gradient", "wide"):
        img = IMAGES[name]
        for kw in ({"split": 1}, {"split": 97}, {"flush_every": 50}, {"flush_every": 1000},
                   {"split": 5, "flush_every": 7, "level": 0}):
            _assert_decodes_as_others(write_png(img, wbits=wbits, **kw), img)


def test_ancillary_chunks_are_skipped() -> None:
    img = IMAGES["panoptic-odd"]
    text = _chunk(b"tEXt", b"Comment\x00made by a test")
    gama = _chunk(b"gAMA", struct.pack(">I", 45455))
    phys = _chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1))
    trns = _chunk(b"tRNS", struct.pack(">HHH", 1, 2, 3))
    for kw in ({"before": text + gama + phys}, {"before": trns}, {"after": text},
               {"between": phys}):
        data = write_png(img, **kw)
        if "between" in kw:  # an ancillary chunk inside the IDAT run: libpng's call
            assert _decode(data) is None
            continue
        _assert_decodes_as_others(data, img)


@pytest.mark.parametrize("name", list(IMAGES))
def test_pillow_writes(name: str) -> None:
    from PIL import Image

    img = IMAGES[name]
    for kw in [{"compress_level": lv} for lv in range(10)] + [{"optimize": True}]:
        b = io.BytesIO()
        Image.fromarray(img).save(b, format="PNG", **kw)
        _assert_decodes_as_others(b.getvalue(), img)


@pytest.mark.parametrize("name", list(IMAGES))
def test_opencv_writes(name: str) -> None:
    img = IMAGES[name]
    bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    filters = [getattr(cv2, f"IMWRITE_PNG_FILTER_{f}", None)
               for f in ("NONE", "SUB", "UP", "AVG", "PAETH")]
    strategies = [getattr(cv2, f"IMWRITE_PNG_STRATEGY_{s}") for s in
                  ("DEFAULT", "FILTERED", "HUFFMAN_ONLY", "RLE", "FIXED")]
    params = [[cv2.IMWRITE_PNG_COMPRESSION, lv] for lv in range(10)]
    params += [[cv2.IMWRITE_PNG_STRATEGY, s] for s in strategies]
    params += [[cv2.IMWRITE_PNG_FILTER, f] for f in filters if f is not None]
    for p in params:
        ok, buf = cv2.imencode(".png", bgr, p)
        assert ok
        _assert_decodes_as_others(buf.tobytes(), img)


def test_work_buffer_reused_and_grown() -> None:
    work = bytearray()
    for name in ("1x1", "wide", "panoptic", "1x9"):
        img = IMAGES[name]
        assert np.array_equal(_decode(write_png(img), work), img[..., :3])
    assert len(work) > 0
    with pytest.raises(TypeError):
        pngcore.decode(write_png(IMAGES["1x1"]), b"not a bytearray")


# --------------------------------------------------------------------------------------------
# PNGs the decoder declines: the fallback decodes them as before
# --------------------------------------------------------------------------------------------
def _pil_png(img, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG", **kw)
    return b.getvalue()


def _declined() -> dict[str, bytes]:
    from PIL import Image

    img = IMAGES["panoptic-odd"]
    pal = Image.fromarray(img).quantize(16)
    return {
        "interlaced": write_png(img, interlace=True),
        "interlaced-rgba": write_png(IMAGES["rgba"], interlace=True),
        "interlaced-1x1": write_png(IMAGES["1x1"], interlace=True),
        "palette": _pil_png(pal),
        "palette-trns": _pil_png(pal, transparency=3),
        "grey": _pil_png(Image.fromarray(img[..., 0])),
        "grey-alpha": _pil_png(Image.fromarray(img[..., :2].copy(), "LA")),
        "plte-in-rgb": write_png(img, before=_chunk(b"PLTE", bytes(range(6)))),
    }


@pytest.mark.parametrize("kind", list(_declined()))
def test_declined_pngs_decode_through_the_fallback(tmp_path: Path, kind: str) -> None:
    data = _declined()[kind]
    assert _decode(data) is None
    path = tmp_path / f"{kind}.png"
    path.write_bytes(data)
    got = read_rgb_png(path)
    assert np.array_equal(got, read_panoptic_rgb(path))
    if kind.startswith("interlaced"):  # and the pixels are right
        img = IMAGES["rgba" if "rgba" in kind else "1x1" if "1x1" in kind else "panoptic-odd"]
        assert np.array_equal(got, img[..., :3])
        assert np.array_equal(got, _opencv_rgb(data))


def test_sixteen_bit_declined(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.full((4, 5, 3), 300, np.uint16))
    assert _decode(path.read_bytes()) is None
    with pytest.raises(DataError, match="x.png: panoptic PNG must be 8-bit"):
        read_rgb_png(path)


# --------------------------------------------------------------------------------------------
# Faults: never more lenient than the fallback, and the same errors
# --------------------------------------------------------------------------------------------
def _fix_crcs(data: bytearray) -> bytes:
    """Recompute every chunk CRC, so only the damage inside a chunk remains."""
    pos = 8
    while pos + 12 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + n
        if end > len(data):
            break
        data[end - 4:end] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4:end - 4])))
        pos = end
    return bytes(data)


def _fallback(data: bytes, tmp_path: Path) -> np.ndarray | str:
    """What the decoding path without the extension makes of a file: pixels or the error."""
    path = tmp_path / "f.png"
    path.write_bytes(data)
    try:
        return read_panoptic_rgb(path)
    except DataError as exc:
        return str(exc)


def test_damaged_pngs_never_accepted_beyond_the_fallback(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sources = [write_png(IMAGES["panoptic"]), write_png(IMAGES["noise"], level=9),
               write_png(IMAGES["gradient"], strategy=zlib.Z_FIXED),
               write_png(IMAGES["rgba"], level=0, split=40)]
    accepted = declined = 0
    for src in sources:
        for _ in range(120):
            data = bytearray(src)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(8, len(data)))
                data[pos] = (data[pos] + int(rng.integers(1, 256))) % 256
            fixed = _fix_crcs(data)
            for candidate in (bytes(data), fixed):
                ours = _decode(candidate)
                if ours is None:
                    declined += 1
                    continue
                accepted += 1  # then the fallback must decode it, to the same pixels
                ref = _fallback(candidate, tmp_path)
                assert not isinstance(ref, str), ref
                assert np.array_equal(ours, ref)
    assert declined > 0 and accepted > 0


def test_truncated_pngs_declined() -> None:
    data = write_png(IMAGES["panoptic"], split=64)
    for n in list(range(0, 80)) + list(range(80, len(data) - 1, 7)):
        assert _decode(data[:n]) is None
    assert _decode(data + b"trailing bytes after IEND") is not None  # as check_png and libpng


def _faulty_files() -> dict[str, bytes]:
    good = write_png(IMAGES["panoptic-odd"])
    ihdr_end = 8 + 25
    bad_crc = bytearray(good)
    bad_crc[ihdr_end + 20] ^= 0xFF  # inside the IDAT data, CRC not fixed
    bad_zlib = bytearray(good)
    bad_zlib[ihdr_end + 10] ^= 0x55
    stream = _zlib(_filter_rows(IMAGES["panoptic-odd"], [1]))
    ihdr = good[8:ihdr_end]
    return {
        "truncated": good[: len(good) // 2],
        "no-iend": good[:-12],
        "bad-crc": bytes(bad_crc),
        "bad-zlib": _fix_crcs(bad_zlib),
        "bad-adler": SIG + ihdr + _chunk(b"IDAT", stream[:-1] + bytes([stream[-1] ^ 1]))
        + _chunk(b"IEND", b""),
        "short-stream": SIG + ihdr + _chunk(b"IDAT", _zlib(b"\x00" * 10)) + _chunk(b"IEND", b""),
        "bad-filter": SIG + ihdr + _chunk(b"IDAT", _zlib(b"\x07" + bytes(len(stream))))
        + _chunk(b"IEND", b""),
        "empty": b"",
        "not-png": b"GIF89a" + good[6:],
    }


def _outcome(path: Path) -> np.ndarray | str:
    try:
        return read_rgb_png(path, Scratch())
    except DataError as exc:
        return str(exc)


@pytest.mark.parametrize("kind", list(_faulty_files()))
def test_faulty_pngs_same_outcome_with_and_without_extension(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"{kind}.png"
    path.write_bytes(_faulty_files()[kind])
    assert _decode(path.read_bytes()) is None  # declined: the fallback decides
    with_ext = _outcome(path)
    monkeypatch.setattr(idmaps, "_pngcore", None)
    without = _outcome(path)
    if isinstance(without, str):  # the same one-line error, naming the file
        assert with_ext == without
        assert without.startswith(str(path)) and "\n" not in without
    else:  # libspng ignores a wrong Adler-32 (OpenCV's libpng refuses it)
        assert kind == "bad-adler" and np.array_equal(with_ext, without)


def test_missing_file_same_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.png: panoptic PNG not found"):
        read_rgb_png(tmp_path / "nope.png")
    assert png_pair_runs(tmp_path / "nope.png", tmp_path / "nope.png") is None


# --------------------------------------------------------------------------------------------
# Inflate against zlib
# --------------------------------------------------------------------------------------------
def _zlib_accepts(stream: bytes, size: int) -> bytes | None:
    """zlib's output when the stream ends cleanly at the end of the input with `size` bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(stream)
    except zlib.error:
        return None
    return out if d.eof and not d.unused_data and len(out) == size else None


def test_inflate_equals_zlib_and_is_never_more_lenient() -> None:
    rng = np.random.default_rng(11)
    raws = [IMAGES["noise"].tobytes(), bytes(5000), _filter_rows(IMAGES["panoptic"], [1]),
            rng.integers(0, 3, 20000, dtype=np.uint8).tobytes(), b""]
    for raw in raws:
        for level in (0, 1, 6, 9):
            for strategy in (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FIXED, zlib.Z_RLE):
                stream = _zlib(raw, level, strategy)
                assert pngcore.inflate(stream, len(raw)) == raw
                assert pngcore.inflate(stream, len(raw) + 1) is None
                if raw:
                    assert pngcore.inflate(stream, len(raw) - 1) is None
                assert pngcore.inflate(stream + b"\x00", len(raw)) is None
                for _ in range(25):  # damaged streams: None, or zlib's answer exactly
                    bad = bytearray(stream)
                    pos = int(rng.integers(0, len(bad)))
                    bad[pos] ^= 1 << int(rng.integers(0, 8))
                    ours = pngcore.inflate(bytes(bad), len(raw))
                    if ours is not None:
                        assert ours == _zlib_accepts(bytes(bad), len(raw))


def test_inflate_header_checks() -> None:
    stream = zlib.compress(b"abc" * 100)
    assert pngcore.inflate(stream, 300) == b"abc" * 100
    assert pngcore.inflate(b"\x79" + stream[1:], 300) is None  # window 64K
    assert pngcore.inflate(bytes([stream[0], stream[1] ^ 1]) + stream[2:], 300) is None
    assert pngcore.inflate(b"\x78\xbb" + stream[2:], 300) is None  # preset dictionary flag
    assert pngcore.inflate(b"", 0) is None
    # a distance beyond the window the header declares (zlib may refuse it): declined
    data = np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes() * 2
    body = zlib.compress(data, 9)
    assert pngcore.inflate(body, 1200) == data
    cmf = 0x08  # CINFO 0: a 256-byte window, the 600-byte distance lies beyond it
    assert pngcore.inflate(bytes([cmf, (31 - cmf * 256 % 31) % 31]) + body[2:], 1200) is None


# --------------------------------------------------------------------------------------------
# Runs and PQ
# --------------------------------------------------------------------------------------------
def test_pair_runs_equal_the_numpy_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    cases = [(IMAGES["panoptic"], _panoptic_like(rng, 48, 64))]
    cases += [(_panoptic_like(rng, h, w, 4), _panoptic_like(rng, h, w, 6))
              for h, w in [(1, 1), (1, 2), (2, 1), (3, 3), (5, 11), (17, 3), (40, 61)]]
    cases += [(IMAGES["rgba"], _panoptic_like(rng, 21, 30)), (IMAGES["noise"], IMAGES["noise"])]
    work = bytearray()
    for k, (gt, pred) in enumerate(cases):
        g_png, p_png = tmp_path / f"g{k}.png", tmp_path / f"p{k}.png"
        g_png.write_bytes(write_png(gt, [k % 5, 1, 2]))
        p_png.write_bytes(write_png(pred, [4, 3, k % 5]))
        want = pair_runs(gt[..., :3], pred[..., :3], Scratch())
        got = pngcore.pair_runs(g_png.read_bytes(), p_png.read_bytes(), work)
        h, w, runs = got
        assert (h, w) == gt.shape[:2]
        runs = np.frombuffer(runs, np.int64).reshape(3, -1)
        for a, b in zip(runs, want):
            assert np.array_equal(a, b)
        scratch = Scratch()
        size, g, p, n = png_pair_runs(g_png, p_png, scratch)
        assert size == gt.shape[:2] and np.array_equal(n, want[2])


def test_pair_runs_declines_mixed_sizes_and_declined_pngs() -> None:
    a, b = write_png(IMAGES["panoptic"]), write_png(IMAGES["panoptic-odd"])
    assert pngcore.pair_runs(a, b) is None
    assert pngcore.pair_runs(a, _declined()["palette"]) is None
    assert pngcore.pair_runs(_faulty_files()["bad-adler"], a) is None


def _rewrite(folder: Path, how: str) -> None:
    """Rewrite a dataset's PNGs (same pixels) with another writer."""
    from PIL import Image

    for k, f in enumerate(sorted(folder.glob("*.png"))):
        rgb = _opencv_rgb(f.read_bytes())
        if how == "pillow":
            Image.fromarray(rgb).save(f, compress_level=k % 10)
        elif how == "rgba-filters":
            f.write_bytes(write_png(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
                                    [k % 5, (k + 2) % 5], level=k % 10))
        elif how == "mixed":  # every other one interlaced: declined, decoded by libspng
            f.write_bytes(write_png(rgb, interlace=k % 2 == 0))


@pytest.mark.parametrize("how", ["opencv", "pillow", "rgba-filters", "mixed"])
def test_pq_same_with_and_without_extension(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gt, pred = write_pair_dataset(tmp_path, 6, 37, 53, seed=2, num_segments=8)
    if how != "opencv":
        _rewrite(tmp_path / "gt", how)
        _rewrite(tmp_path / "pred", "pillow" if how == "mixed" else how)
    fast = evaluate_pq(gt, pred, workers=1)
    calls = []
    real = idmaps._pngcore.pair_runs
    monkeypatch.setattr(idmaps._pngcore, "pair_runs",
                        lambda *a: calls.append(1) or real(*a), raising=False)
    assert evaluate_pq(gt, pred, workers=1) == fast and calls
    monkeypatch.setattr(idmaps, "_pngcore", None)
    assert evaluate_pq(gt, pred, workers=1) == fast
    monkeypatch.setattr(coco_panoptic, "_pyspng", None)  # OpenCV alone
    assert evaluate_pq(gt, pred, workers=1) == fast


def test_pq_errors_same_with_and_without_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gt, pred = write_pair_dataset(tmp_path, 3, 20, 30, seed=4, num_segments=5)
    pngs = sorted((tmp_path / "pred").glob("*.png"))
    faults = {
        "truncated": lambda b: b[: len(b) // 2],
        "damaged": lambda b: _fix_crcs(bytearray(b[:40] + bytes([b[40] ^ 0x5A]) + b[41:])),
        "resized": lambda b: cv2.imencode(".png", np.zeros((5, 5, 3), np.uint8))[1].tobytes(),
        "unlisted-id": lambda b: cv2.imencode(".png", np.full((20, 30, 3), 9, np.uint8))[1]
        .tobytes(),
    }
    original = pngs[1].read_bytes()
    for name, fault in faults.items():
        pngs[1].write_bytes(fault(original))
        messages = []
        for ext in (idmaps._pngcore, None):
            monkeypatch.setattr(idmaps, "_pngcore", ext)
            with pytest.raises(DataError) as exc:
                evaluate_pq(gt, pred, workers=1)
            messages.append(str(exc.value))
        assert messages[0] == messages[1], name
        assert "\n" not in messages[0]
    pngs[1].write_bytes(original)


def test_png_decoder_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert idmaps.png_decoder().startswith("jtsm._pngcore")
    monkeypatch.setattr(idmaps, "_pngcore", None)
    assert idmaps.png_decoder().startswith("libspng")
    monkeypatch.setattr(coco_panoptic, "_pyspng", None)
    assert idmaps.png_decoder() == "OpenCV"
    assert panoptic.png_pair_runs("a.png", "b.png") is None  # absent extension: old path


def test_env_var_turns_the_extension_off() -> None:
    code = "from jtsm.evaluation.idmaps import png_decoder; print(png_decoder())"
    env = dict(os.environ, JTSM_PNGCORE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.startswith("libspng")
