"""Case 9: ``eval pq`` ignored a prediction for an image the ground truth lacks and counted a
ground-truth ``segments_info`` id absent from its PNG as a miss. Now both are refused, naming
the file and the ids, as on the prediction side."""

from __future__ import annotations

import json
import shutil

from conftest import jtsm


def _copy(rel_data, tmp_path):
    gt = tmp_path / "gt.json"
    shutil.copy(rel_data / "annotations/panoptic_val.json", gt)
    shutil.copytree(rel_data / "annotations/panoptic_val", tmp_path / "gt")
    pred = tmp_path / "pred.json"
    shutil.copy(gt, pred)
    shutil.copytree(tmp_path / "gt", tmp_path / "pred")
    return gt, pred


def test_prediction_for_an_unknown_image_is_refused(tmp_path, rel_data):
    gt, pred = _copy(rel_data, tmp_path)
    code, text = jtsm("eval", "--metric", "pq", "--gt", gt, "--pred", pred, "--workers", 1,
                      "--json")
    assert code == 0, text  # a perfect prediction
    d = json.loads(pred.read_text())
    extra = dict(d["annotations"][0], image_id=999)
    d["annotations"].append(extra)
    pred.write_text(json.dumps(d))
    code, text = jtsm("eval", "--metric", "pq", "--gt", gt, "--pred", pred, "--workers", 1)
    assert code == 1 and "image id 999" in text and "no annotation" in text


def test_gt_segment_absent_from_its_png_is_refused(tmp_path, rel_data):
    gt, pred = _copy(rel_data, tmp_path)
    d = json.loads(gt.read_text())
    seg = dict(d["annotations"][0]["segments_info"][0], id=(1 << 24) - 2)
    d["annotations"][0]["segments_info"].append(seg)
    gt.write_text(json.dumps(d))
    code, text = jtsm("eval", "--metric", "pq", "--gt", gt, "--pred", pred, "--workers", 1)
    assert code == 1 and f"[{(1 << 24) - 2}] listed in segments_info but absent" in text
