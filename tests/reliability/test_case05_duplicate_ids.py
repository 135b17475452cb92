"""Case 5: two images with the same id: one was dropped and the tags merged, exit 0. Now
duplicate image ids, file names and annotations are refused with the ids named."""

from __future__ import annotations

import json

import pytest
from conftest import jtsm

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.labels import read_image_labels
from jtsm.errors import DataError


def _write(tmp_path, d):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    (tmp_path / "bad").mkdir(exist_ok=True)
    return path


def test_duplicate_image_id_is_refused(tmp_path, rel_data):
    d = json.loads((rel_data / "annotations/panoptic_train.json").read_text())
    d["images"][1]["id"] = d["images"][0]["id"]
    d["annotations"][1]["image_id"] = d["images"][0]["id"]
    path = _write(tmp_path, d)
    iid = d["images"][0]["id"]
    with pytest.raises(DataError, match=f"image id {iid} is listed twice"):
        read_image_labels(path)
    with pytest.raises(DataError, match=f"image id {iid} is listed twice"):
        load_panoptic_json(path)
    code, text = jtsm("mine", "--dataset", path, "--images", rel_data / "images",
                      "--proposals", rel_data / "props", "--out", tmp_path / "run", "-q")
    assert code == 1 and f"image id {iid} is listed twice" in text
    assert not (tmp_path / "run").exists()


def test_duplicate_file_name_and_annotation_are_refused(tmp_path, rel_data):
    d = json.loads((rel_data / "annotations/panoptic_train.json").read_text())
    d["images"][1]["file_name"] = d["images"][0]["file_name"]
    with pytest.raises(DataError, match="is listed twice"):
        read_image_labels(_write(tmp_path, d))
    d = json.loads((rel_data / "annotations/panoptic_train.json").read_text())
    d["annotations"].append(dict(d["annotations"][0]))
    iid = d["annotations"][0]["image_id"]
    with pytest.raises(DataError, match=f"image {iid} has a second annotation"):
        read_image_labels(_write(tmp_path, d))
    with pytest.raises(DataError, match=f"image {iid} has a second annotation"):
        load_panoptic_json(_write(tmp_path, d))
