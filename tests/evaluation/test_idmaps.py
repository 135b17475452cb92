"""PNG decoding for evaluation (libspng and the OpenCV fallback) and the run-based histogram."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from jtsm.data import coco_panoptic
from jtsm.data.coco_panoptic import read_panoptic_png, read_panoptic_rgb
from jtsm.errors import DataError
from jtsm.evaluation.idmaps import (
    FIRST,
    IdIndexer,
    Scratch,
    joint_histogram,
    pair_runs,
    to_ids,
)
from jtsm.evaluation.panoptic import evaluate_pq
from jtsm.evaluation.synthetic import write_pair_dataset

spng = pytest.importorskip("pyspng")


def _pil_png(img, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format="PNG", **kw)
    return b.getvalue()


def _png_variants() -> dict[str, bytes]:
    """The PNG colour types a panoptic PNG may come in, written by PIL and OpenCV."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    pal = Image.fromarray(rgb).quantize(16)
    return {
        "rgb": _pil_png(Image.fromarray(rgb)),
        "rgb-opencv": cv2.imencode(".png", rgb[..., ::-1])[1].tobytes(),
        "rgba": _pil_png(Image.fromarray(np.dstack([rgb, alpha]))),
        "palette": _pil_png(pal),
        "palette-trns": _pil_png(pal, transparency=3),
        "palette-1bit": _pil_png(Image.fromarray(rgb).quantize(2)),
        "rgb-trns": _pil_png(Image.fromarray(rgb), transparency=(1, 2, 3)),
        "grey": _pil_png(Image.fromarray(rgb[..., 0])),
    }


@pytest.mark.parametrize("kind", list(_png_variants()))
def test_spng_and_opencv_decode_alike(tmp_path: Path, kind: str, monkeypatch) -> None:
    path = tmp_path / f"{kind}.png"
    path.write_bytes(_png_variants()[kind])
    fast_rgb, fast_ids = read_panoptic_rgb(path), read_panoptic_png(path)
    monkeypatch.setattr(coco_panoptic, "_pyspng", None)
    slow_rgb, slow_ids = read_panoptic_rgb(path), read_panoptic_png(path)
    assert fast_rgb.dtype == np.uint8 and fast_rgb.shape == (7, 9, 3)
    assert np.array_equal(fast_rgb, slow_rgb)
    assert np.array_equal(fast_ids, slow_ids) and fast_ids.dtype == np.int64
    # OpenCV itself, as the decoder was before libspng: BGR(A) -> ids, a grey PNG in R only
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int64)
    want = img if img.ndim == 2 else img[..., 2] + 256 * img[..., 1] + 65536 * img[..., 0]
    assert np.array_equal(fast_ids, want)


def test_sixteen_bit_png_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.full((4, 5, 3), 300, np.uint16))
    with pytest.raises(DataError, match="8-bit"):
        read_panoptic_rgb(path)


def test_undecodable_png_named(tmp_path: Path) -> None:
    # chunks and CRCs are fine (check_png passes), the compressed data is not
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", b"not zlib data") + chunk(b"IEND", b""))
    path = tmp_path / "bad.png"
    path.write_bytes(png)
    with pytest.raises(DataError, match="bad.png: cannot decode panoptic PNG"):
        read_panoptic_rgb(path)


def test_evaluate_pq_same_without_pyspng(tmp_path: Path, monkeypatch) -> None:
    gt, pred = write_pair_dataset(tmp_path, 4, 40, 60, seed=5)
    fast = evaluate_pq(gt, pred, workers=1)
    monkeypatch.setattr(coco_panoptic, "_pyspng", None)
    assert evaluate_pq(gt, pred, workers=1) == fast


def _reference(gt_ids: np.ndarray, gt_seg, pred_ids: np.ndarray, pred_seg) -> np.ndarray:
    ix = IdIndexer()
    return joint_histogram(ix._index_wide(gt_ids, gt_seg), ix._index_wide(pred_ids, pred_seg),
                           len(gt_seg) + FIRST, len(pred_seg) + FIRST)


def _rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_run_histogram_equals_pixel_histogram(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    gt_seg = rng.choice(np.arange(1, 1 << 24), 12, replace=False)
    pred_seg = rng.choice(np.arange(1, 1 << 24), 9, replace=False)
    # blocky maps (runs), with ids that share bytes (only one channel differs) and unknown ids
    gt_seg[1] = gt_seg[0] ^ 1
    pred_seg[1] = pred_seg[0] ^ (1 << 16)
    pool_g = np.concatenate([[0, 77], gt_seg])
    pool_p = np.concatenate([[0, 99], pred_seg])
    gt = np.repeat(rng.choice(pool_g, (h, -(-w // 3))), 3, axis=1)[:, :w]
    pred = rng.choice(pool_p, (h, w))
    ref = _reference(gt, gt_seg, pred, pred_seg)
    ix = IdIndexer()
    for g in (gt, gt.astype(np.uint32), _rgb(gt)):
        for p in (pred, _rgb(pred)):
            assert np.array_equal(ix.histogram(g, gt_seg, p, pred_seg), ref)
    g_at, p_at, n = pair_runs(_rgb(gt), _rgb(pred), Scratch())
    assert n.sum() == h * w and (n > 0).all()
    assert ((g_at[1:] != g_at[:-1]) | (p_at[1:] != p_at[:-1])).all()  # maximal runs


def test_run_histogram_edge_shapes() -> None:
    ix = IdIndexer()
    seg = np.array([5])
    for shape in [(1, 1), (1, 2), (2, 1), (0, 4), (3, 3)]:
        ids = np.full(shape, 5, np.int64)
        hist = ix.histogram(_rgb(ids), seg, ids, seg)
        assert hist[FIRST, FIRST] == ids.size and hist.sum() == ids.size


def test_ids_out_of_range() -> None:
    ix = IdIndexer()
    with pytest.raises(DataError, match="2\\^24"):
        ix.histogram(np.array([[1 << 24]]), np.array([1]), np.array([[1]]), np.array([1]))
    with pytest.raises(DataError, match="2\\^24"):
        ix.histogram(np.array([[-1]]), np.array([1]), np.array([[1]]), np.array([1]))


def test_to_ids() -> None:
    ids = np.array([[0, 1, 256, 65536, (1 << 24) - 1]])
    assert np.array_equal(to_ids(_rgb(ids)), ids)


# ---- job building: the fast paths give what the checked ones give ----------------------------
def test_segment_table_fast_path_equals_checked_loop(monkeypatch) -> None:
    from jtsm.evaluation.panoptic import SegmentTable
    from jtsm.structures import CategoryMap

    cats = CategoryMap.from_coco([{"id": 3, "name": "a", "isthing": 1},
                                  {"id": 9, "name": "b", "isthing": 0}])
    segs = [{"id": 5, "category_id": 9, "iscrowd": 0, "area": 10},
            {"id": (1 << 24) - 1, "category_id": 3, "iscrowd": 1, "area": 2.0},
            {"id": 1, "category_id": 3}]
    fast = SegmentTable.from_segments(segs, cats, "x")
    monkeypatch.setattr(SegmentTable, "_from_plain_segments", classmethod(lambda *a: None))
    slow = SegmentTable.from_segments(segs, cats, "x")
    for f in ("ids", "cls", "iscrowd", "area"):
        assert np.array_equal(getattr(fast, f), getattr(slow, f)) and (
            getattr(fast, f).dtype == getattr(slow, f).dtype), f


@pytest.mark.parametrize("segs,match", [
    ([{"id": 0, "category_id": 3}], "not an integer in"),
    ([{"id": 1 << 24, "category_id": 3}], "not an integer in"),
    ([{"id": 2, "category_id": 4}], "unknown category id 4"),
    ([{"id": 2, "category_id": 3}, {"id": 2, "category_id": 9}], "duplicate segment id"),
    ([{"id": "2", "category_id": 3}], "not an integer in"),
    ([{"category_id": 3}], "needs 'id'"),
    ([[2, 3]], "needs 'id'"),
])
def test_segment_table_faults_named(segs, match) -> None:
    from jtsm.evaluation.panoptic import SegmentTable
    from jtsm.structures import CategoryMap

    cats = CategoryMap.from_coco([{"id": 3, "name": "a"}, {"id": 9, "name": "b", "isthing": 0}])
    with pytest.raises(DataError, match=match):
        SegmentTable.from_segments(segs, cats, "x")


def test_folder_join_as_safe_join(tmp_path: Path) -> None:
    from jtsm.evaluation.panoptic import _Folder
    from jtsm.fileio import safe_join

    root = tmp_path / "pngs"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(b"")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    (root / "inner.png").symlink_to(root / "a.png")
    folder = _Folder(root)
    for name in ["a.png", "missing.png", "sub/a.png", "inner.png", "xy:z.png"]:
        assert folder.join(name) == str(safe_join(root, name)), name
    for name in ["link.png", "../outside.png", "/etc/passwd", "", "..", "x:y.png"]:
        with pytest.raises(DataError):
            safe_join(root, name)
        with pytest.raises(DataError):
            folder.join(name)


def test_evaluate_pq_in_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    pairs = [write_pair_dataset(tmp_path / str(k), 4, 40, 60, seed=20 + k) for k in range(3)]
    want = [evaluate_pq(g, p, workers=1) for g, p in pairs]
    with ThreadPoolExecutor(3) as ex:  # each thread has its own lookup table and buffers
        got = list(ex.map(lambda gp: evaluate_pq(*gp, workers=1), pairs * 3))
    assert got == want * 3
