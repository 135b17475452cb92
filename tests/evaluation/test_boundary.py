"""Boundary IoU and Boundary PQ: hand-computed cases, an independent per-segment re-computation
on random data, and the ``jtsm eval --metric boundary`` path on written files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from jtsm.data.coco_panoptic import id2rgb, read_panoptic_png
from jtsm.errors import ConfigError
from jtsm.evaluation.boundary import (
    BoundaryPanopticEvaluator,
    boundary_band,
    boundary_iou,
    boundary_pq_from_pairs,
    dilation_pixels,
    evaluate_boundary_pq,
)
from jtsm.evaluation.panoptic import evaluate_pq, pq_from_pairs
from jtsm.evaluation.synthetic import make_categories, random_pair, write_pair_dataset
from jtsm.structures import CategoryMap, PanopticSeg
from jtsm_cli.main import cli

GROUPS = ("All", "Things", "Stuff")


def _square(top: int, left: int, side: int, size: int = 20) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[top : top + side, left : left + side] = True
    return m


def _ring(side: int, d: int) -> int:
    """Pixels of a side x side square within d of its outside: the square less its core."""
    return side * side - max(side - 2 * d, 0) ** 2


# --------------------------------------------------------------------------------------------
# Band width and the band of one mask
# --------------------------------------------------------------------------------------------
def test_dilation_pixels_from_the_diagonal() -> None:
    assert dilation_pixels(480, 640) == 16  # 0.02 * 800
    assert dilation_pixels(20, 20) == 1  # 0.02 * 28.28 = 0.57 rounds to 1
    assert dilation_pixels(20, 20, 0.001) == 1  # never below one pixel
    assert dilation_pixels(20, 20, 0.08) == 2  # 2.26
    assert dilation_pixels(3, 4, 0.5) == 2  # 2.5: round half to even, as Python's round
    assert dilation_pixels(3, 4, 0.7) == 4  # 3.5
    for bad in (0, -0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ConfigError, match="dilation ratio"):
            dilation_pixels(20, 20, bad)  # type: ignore[arg-type]


def _band_by_erosions(mask: np.ndarray, d: int) -> np.ndarray:
    """The paper's construction, spelled out: pad with one ring of outside, erode d times by
    the 3 x 3 square (a pixel stays when its 8 neighbours and itself are inside), keep the
    pixels of the mask the erosion removed."""
    cur = np.pad(mask.astype(bool), 1)
    h, w = cur.shape
    for _ in range(d):
        p = np.pad(cur, 1, constant_values=True)  # beyond the padding: no effect, as in OpenCV
        nxt = np.ones_like(cur)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                nxt &= p[dy : dy + h, dx : dx + w]
        cur = nxt
    return mask.astype(bool) & ~cur[1:-1, 1:-1]


@pytest.mark.parametrize("seed", range(4))
def test_band_equals_repeated_3x3_erosion(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 60, size=2))
    mask = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 2.0) > 0.5  # blobs touching the edge
    ratio = float(rng.choice([0.01, 0.02, 0.05, 0.1]))
    d = dilation_pixels(h, w, ratio)
    np.testing.assert_array_equal(boundary_band(mask, ratio), _band_by_erosions(mask, d))


def test_image_edge_is_a_contour() -> None:
    # The left half of a 20 x 20 image, d = 1: its band is the mask's own outer ring, along the
    # image edge too (20 x 10 less the 18 x 8 core), not only the cut at column 9 (20 pixels).
    half = np.zeros((20, 20), bool)
    half[:, :10] = True
    band = boundary_band(half)
    assert band.sum() == 20 * 10 - 18 * 8
    core = np.zeros_like(half)
    core[1:19, 1:9] = True
    np.testing.assert_array_equal(band, half & ~core)
    # A mask filling the image has a frame of width d as its band.
    full = np.ones((30, 40), bool)
    d = dilation_pixels(30, 40, 0.1)  # 5
    assert boundary_band(full, 0.1).sum() == 30 * 40 - (30 - 2 * d) * (40 - 2 * d)


# --------------------------------------------------------------------------------------------
# Boundary IoU of two masks
# --------------------------------------------------------------------------------------------
def test_identical_masks_score_one() -> None:
    g = _square(5, 5, 10)
    assert boundary_iou(g, g.copy()) == 1.0


def test_square_shifted_by_one_pixel() -> None:
    side = 10
    g, p = _square(5, 5, side), _square(5, 6, side)
    # d = 1: each band is the square's one-pixel ring. The rings share the top and bottom rows
    # over the 9 shared columns; their vertical sides (cols 5, 14 vs 6, 15) meet nowhere else.
    inter = 2 * (side - 1)
    union = 2 * _ring(side, 1) - inter
    assert boundary_iou(g, p) == pytest.approx(inter / union)  # 18 / 54 = 1/3
    # d = 2: the bands are the squares less their 6 x 6 cores (cols 7-12 and 8-13, rows 7-12).
    # Their intersection is the shared 10 x 9 block less the union of the two cores (6 x 7).
    ratio = 0.08
    assert dilation_pixels(20, 20, ratio) == 2
    inter = side * (side - 1) - (side - 4) * (side - 4 + 1)
    union = 2 * _ring(side, 2) - inter
    assert boundary_iou(g, p, ratio) == pytest.approx(inter / union)  # 48 / 80
    # far below the mask IoU of the same pair
    assert (g & p).sum() / (g | p).sum() == pytest.approx(90 / 110)


def test_thin_object_is_all_boundary() -> None:
    # Bars two pixels tall: with d = 1 every pixel is on the band, so boundary IoU = mask IoU.
    g = np.zeros((20, 20), bool)
    p = np.zeros((20, 20), bool)
    g[8:10, 2:14] = True
    p[8:10, 5:17] = True
    np.testing.assert_array_equal(boundary_band(g), g)
    mask_iou = (g & p).sum() / (g | p).sum()
    assert mask_iou == pytest.approx(18 / 30)
    assert boundary_iou(g, p) == pytest.approx(mask_iou)


def test_boundary_iou_refuses_bad_masks() -> None:
    with pytest.raises(ValueError, match="one shape"):
        boundary_iou(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="empty"):
        boundary_iou(np.zeros((4, 4)), np.zeros((4, 4)))


# --------------------------------------------------------------------------------------------
# Boundary PQ on hand-made panoptic pairs
# --------------------------------------------------------------------------------------------
CATS = [{"id": 1, "name": "box", "isthing": 1}, {"id": 2, "name": "floor", "isthing": 0}]


def _seg(parts: list[tuple[int, int, np.ndarray]], size: int = 20) -> PanopticSeg:
    """A :class:`PanopticSeg` painted from (segment id, category id, mask); the rest is void."""
    ids = np.zeros((size, size), np.int64)
    for sid, _, m in parts:
        ids[m] = sid
    return PanopticSeg(ids, [{"id": sid, "category_id": cid, "iscrowd": 0}
                             for sid, cid, _ in parts])


def _shifted_pair() -> tuple[PanopticSeg, PanopticSeg]:
    """A box shifted by one column (mask IoU 0.9, boundary IoU 18/44) and an exact floor strip,
    on void elsewhere."""
    floor = np.zeros((20, 20), bool)
    floor[16:] = True
    gt = _seg([(10, 1, _square(5, 5, 10)), (20, 2, floor)])
    pred = _seg([(11, 1, _square(5, 6, 10)), (21, 2, floor.copy())])
    return gt, pred


def test_match_lost_on_the_boundary() -> None:
    gt, pred = _shifted_pair()
    # Mask IoU of the boxes: 90 shared pixels; the prediction's column 15 (10 pixels) lies on
    # gt void and leaves the union: 100 + 100 - 90 - 10.
    mask_iou = 90 / (100 + 100 - 90 - 10)
    # Boundary IoU (d = 1): rings of 36, sharing 18 (see the shifted-square case); of the
    # predicted ring, column 15 (10 pixels) lies on gt void.
    b_iou = 18 / (36 + 36 - 18 - 10)
    assert mask_iou > 0.5 > b_iou
    r = boundary_pq_from_pairs([(gt, pred)], CATS)
    # Boundary: the box is a false negative and a false positive; the floor matches exactly.
    assert r["per_class"]["box"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert r["per_class"]["floor"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}
    assert r["All"] == {"pq": 0.5, "sq": 0.5, "rq": 0.5, "n": 2}
    assert r["Things"]["rq"] == 0.0
    # Mask PQ of the same pass: the box matches with IoU 0.9; it equals the PQ path.
    assert r["mask"]["per_class"]["box"]["pq"] == pytest.approx(mask_iou)
    assert r["mask"]["All"]["pq"] == pytest.approx((mask_iou + 1) / 2)
    assert r["mask"] == pq_from_pairs([(gt, pred)], CATS)
    assert r["dilation_ratio"] == 0.02
    # A band as wide as the image: every pixel is boundary, so boundary IoU = mask IoU.
    wide = boundary_pq_from_pairs([(gt, pred)], CATS, dilation_ratio=1.0)
    assert wide["All"] == wide["mask"]["All"]


def test_void_leaves_the_boundary_union() -> None:
    # The box predicted two columns wider, into gt void: mask IoU 1 (its void pixels leave the
    # union), boundary IoU 28 / 36 (its ring of 40 has 12 pixels on void).
    gt = _seg([(10, 1, _square(5, 5, 10))])
    wide = np.zeros((20, 20), bool)
    wide[5:15, 5:17] = True
    pred = _seg([(11, 1, wide)])
    ring_g, ring_p = _ring(10, 1), 10 * 12 - 8 * 10
    on_void = 10 + 2  # column 16, and column 15 in the top and bottom rows
    inter = 2 * 10 + 8  # top and bottom rows of the gt ring, and its left side (col 5)
    expected = inter / (ring_g + ring_p - inter - on_void)
    assert expected == pytest.approx(7 / 9)
    r = boundary_pq_from_pairs([(gt, pred)], CATS)
    assert r["per_class"]["box"]["sq"] == pytest.approx(expected)
    assert r["mask"]["per_class"]["box"]["sq"] == 1.0


def test_crowd_and_ignored_predictions_follow_pq() -> None:
    # A crowd gt box never matches and is no false negative; a prediction on it is ignored.
    gt = _seg([(10, 1, _square(5, 5, 10))])
    gt.segments[0]["iscrowd"] = 1
    pred = _seg([(11, 1, _square(5, 5, 10))])
    ev = BoundaryPanopticEvaluator(CATS)
    ev.process(gt, pred)
    s = ev.stats.boundary
    assert s.tp.sum() == s.fp.sum() == s.fn.sum() == 0


# --------------------------------------------------------------------------------------------
# Random data against an independent per-segment computation
# --------------------------------------------------------------------------------------------
def _reference_counts(pairs, cats: CategoryMap, ratio: float) -> dict[str, np.ndarray]:
    """Boundary PQ counts segment by segment, with the paper's rules and no shared code: one
    band per segment (repeated 3 x 3 erosions), dict lookups, plain loops."""
    k = cats.num_classes
    tp, fp, fn, iou_sum = (np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64),
                           np.zeros(k))
    for gt, pred in pairs:
        h, w = gt.ids.shape
        d = max(1, int(round(ratio * np.sqrt(h * h + w * w))))
        void = gt.ids == 0
        gmask = {s["id"]: gt.ids == s["id"] for s in gt.segments}
        pmask = {s["id"]: pred.ids == s["id"] for s in pred.segments}
        gband = {i: _band_by_erosions(m, d) for i, m in gmask.items()}
        pband = {i: _band_by_erosions(m, d) for i, m in pmask.items()}
        crowd = {}
        for s in gt.segments:
            if s.get("iscrowd"):
                crowd[s["category_id"]] = s["id"]
        gm, pm = set(), set()
        for g in gt.segments:
            for p in pred.segments:
                if g.get("iscrowd") or g["category_id"] != p["category_id"]:
                    continue
                a, b = gmask[g["id"]], pmask[p["id"]]
                inter = int((a & b).sum())
                if inter == 0:
                    continue
                garea = g.get("area", int(a.sum()))
                m_iou = inter / (garea + b.sum() - inter - (b & void).sum())
                ga, pa = gband[g["id"]], pband[p["id"]]
                bi = int((ga & pa).sum())
                b_iou = bi / (ga.sum() + pa.sum() - bi - (pa & void).sum())
                v = min(m_iou, b_iou)
                if v > 0.5:
                    c = cats.index(g["category_id"])
                    tp[c] += 1
                    iou_sum[c] += v
                    gm.add(g["id"])
                    pm.add(p["id"])
        for g in gt.segments:
            if g["id"] not in gm and not g.get("iscrowd"):
                fn[cats.index(g["category_id"])] += 1
        for p in pred.segments:
            if p["id"] in pm:
                continue
            b = pmask[p["id"]]
            ign = (b & void).sum()
            if p["category_id"] in crowd:
                ign += (b & gmask[crowd[p["category_id"]]]).sum()
            if ign / b.sum() <= 0.5:
                fp[cats.index(p["category_id"])] += 1
    return {"tp": tp, "fp": fp, "fn": fn, "iou": iou_sum}


@pytest.mark.parametrize("seed,ratio", [(0, 0.02), (1, 0.05), (2, 0.01)])
def test_equals_per_segment_computation(seed: int, ratio: float) -> None:
    rng = np.random.default_rng(seed)
    cats = make_categories()
    cmap = CategoryMap.from_coco(cats)
    pairs = []
    for _ in range(6):
        g, gs, p, ps = random_pair(rng, cats, 48, 64, num_segments=8)
        pairs.append((PanopticSeg(g, gs), PanopticSeg(p, ps)))
    assert any(s["iscrowd"] for g, _ in pairs for s in g.segments)
    ev = BoundaryPanopticEvaluator(cats, ratio)
    for g, p in pairs:
        ev.process(g, p)
    ref = _reference_counts(pairs, cmap, ratio)
    got = ev.stats.boundary
    np.testing.assert_array_equal(got.tp, ref["tp"])
    np.testing.assert_array_equal(got.fp, ref["fp"])
    np.testing.assert_array_equal(got.fn, ref["fn"])
    np.testing.assert_allclose(got.iou, ref["iou"], rtol=0, atol=1e-12)
    # the data has matches the boundary loses
    assert got.tp.sum() < ev.stats.mask.tp.sum()


def test_never_above_mask_pq(tmp_path: Path) -> None:
    gt, pred = write_pair_dataset(tmp_path, 8, 40, 60, seed=3, num_segments=8)
    r = evaluate_boundary_pq(gt, pred, workers=1)
    assert r["mask"] == evaluate_pq(gt, pred, workers=1)  # the same pass gives mask PQ
    for g in GROUPS:
        assert r[g]["n"] == r["mask"][g]["n"]
        assert r[g]["pq"] <= r["mask"][g]["pq"] + 1e-12
        assert r[g]["rq"] <= r["mask"][g]["rq"] + 1e-12
    assert r["per_class"].keys() == r["mask"]["per_class"].keys()
    for name, v in r["per_class"].items():
        assert v["pq"] <= r["mask"]["per_class"][name]["pq"] + 1e-12
    assert r["All"]["pq"] < r["mask"]["All"]["pq"]
    # chunk sums in a fixed order: any worker count gives the same bits
    assert evaluate_boundary_pq(gt, pred, workers=2) == r
    # the files path (runs from the PNGs) equals the in-memory path (runs from id maps)
    g, p = json.loads(gt.read_text()), json.loads(pred.read_text())
    pairs = [
        (PanopticSeg(read_panoptic_png(tmp_path / "gt" / a["file_name"]), a["segments_info"]),
         PanopticSeg(read_panoptic_png(tmp_path / "pred" / b["file_name"]), b["segments_info"]))
        for a, b in zip(g["annotations"], p["annotations"])
    ]
    assert boundary_pq_from_pairs(pairs, g["categories"]) == r


# --------------------------------------------------------------------------------------------
# jtsm eval --metric boundary
# --------------------------------------------------------------------------------------------
def _write(root: Path, gt: PanopticSeg, pred: PanopticSeg) -> tuple[Path, Path]:
    """The pair as COCO panoptic files: gt.json + gt/, pred.json + pred/."""
    h, w = gt.ids.shape
    images = [{"id": 1, "file_name": "a.jpg", "height": h, "width": w}]
    for name, seg in (("gt", gt), ("pred", pred)):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "a.png"), cv2.cvtColor(id2rgb(seg.ids), cv2.COLOR_RGB2BGR))
        ann = {"image_id": 1, "file_name": "a.png", "segments_info": seg.segments}
        (root / f"{name}.json").write_text(json.dumps(
            {"images": images, "annotations": [ann], "categories": CATS}))
    return root / "gt.json", root / "pred.json"


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["eval", *args])
    return r.exit_code, r.output


def _one_line_error(code: int, out: str, *needles: str) -> None:
    assert code == 1, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_cli_json_and_table(tmp_path: Path) -> None:
    gt, pred = _write(tmp_path, *_shifted_pair())
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred), "--json",
                     "--workers", "1")
    assert code == 0, out
    r = json.loads(out)
    assert set(r) == {"All", "Things", "Stuff", "per_class", "mask", "dilation_ratio"}
    assert r["All"] == {"pq": 0.5, "sq": 0.5, "rq": 0.5, "n": 2}
    assert r["mask"]["All"]["pq"] == pytest.approx(0.95)
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred), "--per-class")
    assert code == 0, out
    assert "Boundary PQ" in out and "50.0" in out and "95.0" in out and "box" in out
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred), "--json",
                     "--dilation-ratio", "1")
    r = json.loads(out)
    assert r["dilation_ratio"] == 1.0 and r["All"] == r["mask"]["All"]


def test_cli_bad_input(tmp_path: Path) -> None:
    gt, pred = write_pair_dataset(tmp_path / "d", 3, 30, 40, seed=5, num_segments=6)
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred),
                     "--dilation-ratio", "0.1")
    assert code == 2 and "--metric boundary only" in out
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred),
                     "--dilation-ratio", "0")
    assert code == 2 and "--dilation-ratio" in out
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred),
                     "--dilation-ratio", "nan")
    _one_line_error(code, out, "dilation ratio", "nan")
    png = pred.parent / "pred" / "000001.png"
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(png), np.ascontiguousarray(img[:-3]))
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(png), "40x27", "40x30")
    d = json.loads(pred.read_text())
    d["annotations"].pop(0)
    pred.write_text(json.dumps(d))
    code, out = _run("--metric", "boundary", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(pred), "no prediction", "image 1")
