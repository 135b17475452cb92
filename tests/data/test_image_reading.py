"""Images read as viewers show them: EXIF orientation, bit depths, truncation, size limits."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from jtsm.errors import DataError
from jtsm.fileio import read_image, read_image_and_size, read_image_size


def _exif(orientation: int) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_every_exif_orientation_matches_what_pil_shows(tmp_path, orientation, fmt):
    rgb = np.random.default_rng(orientation).integers(0, 255, (5, 9, 3), dtype=np.uint8)
    path = tmp_path / f"o{orientation}.{fmt}"
    Image.fromarray(rgb).save(path, exif=_exif(orientation))
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    img, size = read_image_and_size(path)
    assert np.array_equal(img, shown)
    assert size == shown.shape[:2] == read_image_size(path)


def test_a_phone_jpeg_with_orientation_6_is_read_upright(tmp_path):
    h, w = 48, 80
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:12, :20] = (255, 0, 0)  # red block at the stored top-left corner
    Image.fromarray(rgb).save(tmp_path / "phone.jpg", exif=_exif(6), quality=95)
    img, size = read_image_and_size(tmp_path / "phone.jpg")
    assert img.shape == (w, h, 3) and size == (w, h) == read_image_size(tmp_path / "phone.jpg")
    # orientation 6: the stored top-left corner is shown at the top-right
    assert img[:20, -12:, 0].mean() > 200 and img[:20, :12, 0].mean() < 60
    small = read_image(tmp_path / "phone.jpg", max_side=40)  # downscaled keeps the turn
    assert small.shape == (40, 24, 3)


def test_a_reduced_jpeg_decode_is_turned_too(tmp_path, monkeypatch):
    rgb = np.zeros((64, 256, 3), np.uint8)
    rgb[:, :32] = 255
    Image.fromarray(rgb).save(tmp_path / "wide.jpg", exif=_exif(8), quality=95)
    img, size = read_image_and_size(tmp_path / "wide.jpg", max_side=64)  # decoded at 1/4
    assert size == (256, 64) and img.shape == (64, 16, 3)
    assert img[-8:].mean() > 200 and img[:8].mean() < 40  # orientation 8: left edge -> bottom


def test_sixteen_bit_grey_and_rgba_become_rgb_uint8(tmp_path):
    grey16 = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    img = read_image(tmp_path / "g16.png")
    assert img.dtype == np.uint8 and img.shape == (5, 6, 3)
    assert np.array_equal(img[..., 0], np.round(grey16 / 257).astype(np.uint8))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    # nearly transparent (alpha 10 of 255): composited over white, as a viewer shows it
    want = rgba[..., :3] * (10 / 255) + 255 * (1 - 10 / 255)
    assert np.abs(read_image(tmp_path / "a.png") - want).max() <= 0.5


def test_a_cut_jpeg_is_an_error_not_a_grey_image(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=_exif(1))
    data = buf.getvalue()
    (tmp_path / "ok.jpg").write_bytes(data)
    assert read_image(tmp_path / "ok.jpg").shape == (64, 64, 3)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"cut\.jpg: truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    # bytes after the end marker (phones append data) are fine
    (tmp_path / "tail.jpg").write_bytes(data + b"\x00" * 100)
    assert read_image(tmp_path / "tail.jpg").shape == (64, 64, 3)


def test_the_pixel_limit_holds_for_jpeg_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(tmp_path / "a.jpg")
    monkeypatch.setenv("JTSM_MAX_IMAGE_PIXELS", "10000")
    with pytest.raises(DataError, match=r"a\.jpg: image is 120x100 .*JTSM_MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "a.jpg", max_side=4096)


def test_a_format_without_a_readable_header_is_refused(tmp_path):
    (tmp_path / "x.png").write_bytes(b"#?RADIANCE\n" + bytes(200))
    with pytest.raises(DataError, match=r"x\.png: not an image format jtsm reads"):
        read_image(tmp_path / "x.png")


def _claiming(size: int) -> bytes:
    """A valid small JPEG whose header is edited to claim ``size`` x ``size`` pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG")
    d = bytearray(buf.getvalue())
    i = d.find(b"\xff\xc0")
    d[i + 5:i + 9] = size.to_bytes(2, "big") * 2
    return bytes(d)


def test_a_jpeg_claiming_more_pixels_than_it_holds_is_refused_before_decoding(tmp_path):
    import time

    (tmp_path / "bomb.jpg").write_bytes(_claiming(20000))
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"bomb\.jpg: JPEG header says 20000x20000 pixels but "
                                        r"the file holds \d+ bytes of image data"):
        read_image(tmp_path / "bomb.jpg")
    assert time.perf_counter() - t0 < 1.0  # refused from the header, nothing decoded


@pytest.mark.parametrize("opts", [{}, {"optimize": True}, {"progressive": True},
                                  {"progressive": True, "optimize": True}])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_flat_jpegs_that_compress_to_almost_nothing_still_read(tmp_path, opts, mode):
    img = Image.new(mode, (1200, 900), (128, 128, 128) if mode == "RGB" else 128)
    img.save(tmp_path / "flat.jpg", quality=50, **opts)
    out = read_image(tmp_path / "flat.jpg")
    assert out.shape == (900, 1200, 3) and abs(int(out.mean()) - 128) <= 1
