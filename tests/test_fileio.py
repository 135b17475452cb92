from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from jtsm.errors import DataError
from jtsm.fileio import atomic_path, atomic_write_json, read_image, read_json, safe_join


def test_safe_join(tmp_path):
    assert safe_join(tmp_path, "a/b.jpg") == (tmp_path / "a/b.jpg").resolve()
    for bad in ("../x.jpg", "a/../../x.jpg", "/etc/passwd", ""):
        with pytest.raises(DataError):
            safe_join(tmp_path, bad)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(DataError, match="escapes"):
        safe_join(tmp_path, "link/passwd")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "x.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert read_json(p) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]


def test_read_json_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "t.json").write_text('{"a": ')
    with pytest.raises(DataError, match="t.json: malformed JSON"):
        read_json(tmp_path / "t.json")


def test_read_image_converts_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    assert np.array_equal(read_image(tmp_path / "grey.png"), np.repeat(rgb[..., :1], 3, 2))
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 255, np.uint8)], 2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")  # opaque: the colours as stored
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (6, 7, 3)
    deep = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(deep, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_image(tmp_path / "deep.png"), rgb)


def _over_white(rgb, alpha):
    """The reference: ``c a + 255 (1 - a)`` in floats, ``alpha`` in [0, 1]."""
    return rgb * alpha[..., None] + 255.0 * (1 - alpha[..., None])


def test_read_image_composites_transparency_on_white(tmp_path):
    # BGRA as cv2 writes it: transparent black, half-transparent red, opaque blue, and a
    # random row checked against the float reference
    rng = np.random.default_rng(1)
    rgb = np.zeros((2, 5, 3), np.uint8)
    alpha = np.zeros((2, 5), np.uint8)
    rgb[0, 1], alpha[0, 1] = (255, 0, 0), 128
    rgb[0, 2], alpha[0, 2] = (0, 0, 255), 255
    rgb[0, 3], alpha[0, 3] = (0, 255, 0), 0  # invisible green stays invisible
    rgb[1] = rng.integers(0, 256, (5, 3))
    alpha[1] = rng.integers(0, 256, 5)
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    assert cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    got = read_image(tmp_path / "rgba.png")
    assert got.shape == (2, 5, 3) and got.dtype == np.uint8
    assert got[0, 0].tolist() == [255, 255, 255]
    assert got[0, 3].tolist() == [255, 255, 255]
    assert np.abs(got[0, 1].astype(int) - (255, 128, 128)).max() <= 1
    assert got[0, 2].tolist() == [0, 0, 255]
    want = _over_white(rgb.astype(float), alpha / 255.0)
    assert np.abs(got.astype(float) - want).max() <= 0.5 + 1e-9  # rounded, not truncated

    # 16-bit BGRA: the same picture at 16 bits
    deep = bgra.astype(np.uint16) * 257
    deep[0, 1, 3] = 32768  # half of 65535
    assert cv2.imwrite(str(tmp_path / "rgba16.png"), deep)
    got16 = read_image(tmp_path / "rgba16.png")
    assert got16.dtype == np.uint8
    assert got16[0, 0].tolist() == [255, 255, 255]
    assert np.abs(got16[0, 1].astype(int) - (255, 128, 128)).max() <= 1
    assert np.abs(got16.astype(float) - want).max() <= 1.5

    # grey + alpha (LA; OpenCV cannot write it, PIL can)
    grey = np.array([[200, 200, 0, 90]], np.uint8)
    la_alpha = np.array([[0, 128, 255, 200]], np.uint8)
    Image.fromarray(np.dstack([grey, la_alpha]), "LA").save(tmp_path / "la.png")
    got_la = read_image(tmp_path / "la.png")
    assert got_la.shape == (1, 4, 3)
    assert (got_la[..., 0] == got_la[..., 1]).all() and (got_la[..., 1] == got_la[..., 2]).all()
    want_la = _over_white(np.repeat(grey[..., None], 3, 2).astype(float), la_alpha / 255.0)
    assert np.abs(got_la.astype(float) - want_la).max() <= 0.5 + 1e-9
    assert got_la[0, 0].tolist() == [255, 255, 255]


def test_read_image_bad_files(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="zero.jpg: empty file"):
        read_image(tmp_path / "zero.jpg")
    ok, buf = cv2.imencode(".jpg", np.zeros((50, 50, 3), np.uint8))
    (tmp_path / "trunc.jpg").write_bytes(buf.tobytes()[:40])
    with pytest.raises(DataError, match="trunc.jpg"):
        read_image(tmp_path / "trunc.jpg")
    with pytest.raises(DataError, match="no such image"):
        read_image(tmp_path / "missing.jpg")


def test_read_image_downscales_large(tmp_path):
    Image.fromarray(np.zeros((300, 600, 3), np.uint8)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", max_side=100).shape == (50, 100, 3)


def test_read_image_default_limit_downscales_and_env_overrides(tmp_path, monkeypatch):
    from jtsm import fileio

    Image.fromarray(np.zeros((300, 600, 3), np.uint8)).save(tmp_path / "wide.png")
    assert read_image(tmp_path / "wide.png").shape == (300, 600, 3)  # under MAX_SIDE
    monkeypatch.setenv("JTSM_MAX_IMAGE_SIDE", "150")
    img, size = fileio.read_image_and_size(tmp_path / "wide.png")
    assert img.shape == (75, 150, 3) and size == (300, 600)
    monkeypatch.setenv("JTSM_MAX_IMAGE_SIDE", "many")
    with pytest.raises(DataError, match="JTSM_MAX_IMAGE_SIDE='many'"):
        read_image(tmp_path / "wide.png")


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    from jtsm import fileio

    yy, xx = np.mgrid[0:1600, 0:2400]
    img = np.stack([xx % 256, yy % 256, (xx + yy) % 256], 2).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "big.jpg"), img)
    seen = []
    real = fileio.decode_image
    monkeypatch.setattr(fileio, "decode_image", lambda d, p, f=cv2.IMREAD_UNCHANGED:
                        seen.append(f) or real(d, p, f))
    monkeypatch.setenv("JTSM_MAX_IMAGE_SIDE", "500")
    out = read_image(tmp_path / "big.jpg")
    assert out.shape == (333, 500, 3)
    assert seen == [cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION]
    # a JPEG too large even at 1/8 scale, and a PNG (no reduced decoding) over the limit
    monkeypatch.setenv("JTSM_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError, match=r"big.jpg: image is 2400x1600 \(4 Mpx\), over the "):
        read_image(tmp_path / "big.jpg")


def test_png_bomb_is_refused_from_its_header_with_bounded_memory(tmp_path):
    """A few-kB PNG announcing 20000x20000 pixels: refused before decoding, RSS stays low."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "cli"))
    from badfiles import make_png_bomb

    sys.path.pop(0)
    bomb = make_png_bomb(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 10_000
    code = (
        "import resource, sys\n"
        "from jtsm.fileio import read_image\n"
        "from jtsm.errors import DataError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    read_image(sys.argv[1])\n"
        "except DataError as exc:\n"
        "    print(exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True,
                       timeout=60)
    msg, grew_kb = r.stdout.strip().splitlines()
    assert "bomb.png: image is 20000x20000 (400 Mpx), over the decoding limit" in msg
    assert int(grew_kb) < 50_000, grew_kb
    assert r.stderr == ""  # nothing from libpng or OpenCV either


def test_truncated_and_damaged_png_are_named_without_library_noise(tmp_path):
    import subprocess
    import sys

    rgb = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", rgb)
    data = buf.tobytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) * 2 // 3])
    bad = bytearray(data)
    bad[bad.index(b"IDAT") + 30] ^= 0xFF
    (tmp_path / "crc.png").write_bytes(bytes(bad))
    with pytest.raises(DataError, match="cut.png: truncated PNG"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(DataError, match="crc.png: corrupt PNG .CRC error in chunk 'IDAT'"):
        read_image(tmp_path / "crc.png")
    code = ("import sys\nfrom jtsm.fileio import read_image\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n        read_image(p)\n    except Exception as e:\n        print(e)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cut.png"),
                        str(tmp_path / "crc.png")], capture_output=True, text=True, timeout=60)
    assert len(r.stdout.splitlines()) == 2 and r.stderr == ""
