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
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 9, np.uint8)], 2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (6, 7, 3)
    deep = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(deep, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_image(tmp_path / "deep.png"), rgb)


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
