"""``jtsm eval``: JSON shapes, tables, recall wiring, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from jtsm.evaluation.synthetic import write_pair_dataset
from jtsm_cli.main import cli


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_pair_dataset(tmp_path / "d", 4, 30, 40, seed=5, num_segments=6)


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["eval", *args])
    return r.exit_code, r.output


def _one_line_error(code: int, out: str, *needles: str) -> None:
    assert code == 1, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert "Traceback" not in out
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_pq_json_shape_and_table(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--json",
                     "--workers", "1")
    assert code == 0, out
    r = json.loads(out)
    assert set(r) == {"All", "Things", "Stuff", "per_class"}
    for g in ("All", "Things", "Stuff"):
        assert set(r[g]) == {"pq", "sq", "rq", "n"}
        assert 0 <= r[g]["pq"] <= r[g]["sq"] <= 1 or r[g]["n"] == 0
    assert all(set(v) == {"pq", "sq", "rq"} for v in r["per_class"].values())
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--per-class")
    assert code == 0 and "Things" in out and f"{100 * r['All']['pq']:.1f}" in out


def _edit(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def test_missing_prediction(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    _edit(pred, lambda d: d["annotations"].pop(1))
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(pred), "no prediction", "image 2", "000001.jpg")


def test_png_id_absent_from_segments_info(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    removed = []
    _edit(pred, lambda d: removed.append(d["annotations"][2]["segments_info"].pop(0)))
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--workers", "2")
    _one_line_error(code, out, "000002.png", str(removed[0]["id"]), "absent from segments_info")


def test_gt_png_id_absent_from_segments_info(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    _edit(gt, lambda d: d["annotations"][0]["segments_info"].pop(0))
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--workers", "1")
    _one_line_error(code, out, str(gt.parent / "gt" / "000000.png"), "absent")


def test_unknown_category(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    _edit(pred, lambda d: d["annotations"][3]["segments_info"][0].update(category_id=999))
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(pred), "image 4", "unknown category id 999")


def test_png_of_wrong_size(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    png = pred.parent / "pred" / "000001.png"
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(png), np.ascontiguousarray(img[:-3]))
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--workers", "1")
    _one_line_error(code, out, str(png), "40x27", "40x30")


def test_malformed_json(pair: tuple[Path, Path], tmp_path: Path) -> None:
    gt, pred = pair
    pred.write_text('{"annotations": [')
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(pred), "malformed JSON")
    bad = tmp_path / "dets.json"
    bad.write_text("[{]")
    for metric in ("ap", "map", "corloc"):
        code, out = _run("--metric", metric, "--gt", str(gt), "--pred", str(bad))
        _one_line_error(code, out, str(bad))


def test_missing_png(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    (pred.parent / "pred" / "000003.png").unlink()
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--workers", "1")
    _one_line_error(code, out, "000003.png", "not found")


def test_detection_results_errors(pair: tuple[Path, Path], tmp_path: Path) -> None:
    gt, _ = pair
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 77, "category_id": 1, "bbox": [0, 0, 2, 2],
                                 "score": 1.0}]))
    code, out = _run("--metric", "map", "--gt", str(gt), "--pred", str(dets))
    _one_line_error(code, out, str(dets), "image id 77")
    dets.write_text(json.dumps([{"image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2],
                                 "score": 1.0}]))
    code, out = _run("--metric", "corloc", "--gt", str(gt), "--pred", str(dets))
    _one_line_error(code, out, str(dets), "unknown category id 5")


def test_map_corloc_ap_shapes(pair: tuple[Path, Path], tmp_path: Path) -> None:
    gt, _ = pair
    d = json.loads(gt.read_text())
    things = {c["id"] for c in d["categories"] if c["isthing"]}
    dets = [{"image_id": a["image_id"], "category_id": s["category_id"], "bbox": s["bbox"],
             "score": 0.5} for a in d["annotations"] for s in a["segments_info"]
            if s["category_id"] in things and not s["iscrowd"]]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    code, out = _run("--metric", "map", "--gt", str(gt), "--pred", str(path), "--json")
    assert code == 0, out
    r = json.loads(out)
    assert set(r) == {"map", "per_class"} and r["map"] == 1.0  # perfect boxes
    code, out = _run("--metric", "corloc", "--gt", str(gt), "--pred", str(path), "--json")
    r = json.loads(out)
    assert set(r) == {"corloc", "per_class"} and r["corloc"] == 1.0
    code, out = _run("--metric", "ap", "--gt", str(gt), "--pred", str(path), "--json")
    assert code == 0, out
    r = json.loads(out)
    assert set(r) == {"bbox"}  # box results only: no mask AP
    assert set(r["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert r["bbox"]["AP"] == pytest.approx(1.0)
    code, out = _run("--metric", "map", "--gt", str(gt), "--pred", str(path), "--per-class")
    assert code == 0 and "mAP@0.5" in out and "100.0" in out


def test_recall_is_wired(monkeypatch: pytest.MonkeyPatch, pair: tuple[Path, Path]) -> None:
    import jtsm.evaluation.recall as recall

    calls = []
    group = {"recall@0.5": 0.5, "recall@0.7": 0.25, "abo": 0.6, "n": 4}

    def fake(gt_json, proposals_dir, ks=(100, 500, 1000, None)):
        calls.append((Path(gt_json), Path(proposals_dir), tuple(ks)))
        return {"all": group, "things": group, "stuff": group,
                "by_k": {k if k is not None else "all": {"all": group} for k in ks}}

    monkeypatch.setattr(recall, "evaluate_recall", fake)
    gt, _ = pair
    code, out = _run("--metric", "recall", "--gt", str(gt), "--pred", "props", "--k", "10",
                     "--json")
    assert code == 0, out
    assert calls == [(gt, Path("props"), (10,))]
    assert json.loads(out)["all"] == group
    code, out = _run("--metric", "recall", "--gt", str(gt), "--pred", "props")
    assert code == 0 and "recall@0.5" in out and "25.0" in out


def test_help_has_example() -> None:
    code, out = _run("--help")
    assert code == 0 and "Example" in out and "--metric" in out


def test_png_folders_by_option(pair: tuple[Path, Path], tmp_path: Path) -> None:
    gt, pred = pair
    code, before = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--json")
    moved = tmp_path / "elsewhere"
    (pred.parent / "pred").rename(moved)
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(pred.parent / "pred"), "--pred-dir")
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred), "--json",
                     "--pred-dir", str(moved))
    assert code == 0 and json.loads(out) == json.loads(before)


def test_duplicate_prediction(pair: tuple[Path, Path]) -> None:
    gt, pred = pair
    _edit(pred, lambda d: d["annotations"].append(d["annotations"][0]))
    code, out = _run("--metric", "pq", "--gt", str(gt), "--pred", str(pred))
    _one_line_error(code, out, str(pred), "image id 1 has two predictions")
