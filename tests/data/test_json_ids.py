"""Image ids are read one way: the labels reader (mine, relabel), the panoptic reader
(refine, eval) and predict's dataset reader accept and refuse the same values."""

from __future__ import annotations

import json

import pytest

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.json_ids import json_id
from jtsm.data.labels import read_image_labels
from jtsm.errors import DataError


@pytest.mark.parametrize("value,want", [(7, 7), (7.0, 7), (0, 0)])
def test_integers_pass(value, want):
    assert json_id(value, "x") == want and type(json_id(value, "x")) is int


@pytest.mark.parametrize("value", [7.9, True, False, "7", None, [7], float("nan")])
def test_everything_else_is_one_line_naming_the_entry(value):
    with pytest.raises(DataError, match=r"^f.json: images\[0\].id: expected an integer id"):
        json_id(value, "f.json: images[0].id")


@pytest.mark.parametrize("bad", [7.9, True, "7"])
def test_labels_and_panoptic_readers_agree(tmp_path, bad):
    cats = [{"id": 1, "name": "cat", "isthing": 1}]
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"images": [{"id": bad, "file_name": "a.jpg", "labels": [1]}],
                                  "categories": cats}))
    with pytest.raises(DataError, match=r"images\[0\]\.id: expected an integer id"):
        read_image_labels(labels)
    pan = tmp_path / "pan.json"
    pan.write_text(json.dumps({"images": [{"id": bad, "file_name": "a.jpg", "height": 2,
                                           "width": 2}], "annotations": [], "categories": cats}))
    with pytest.raises(DataError, match=r"images\[0\]\.id: expected an integer id"):
        load_panoptic_json(pan)


def test_mine_refuses_a_fractional_or_boolean_id_with_one_line(tmp_path):
    from click.testing import CliRunner

    from jtsm_cli.main import cli

    for bad in (7.9, True):
        labels = tmp_path / "labels.json"
        labels.write_text(json.dumps({
            "images": [{"id": bad, "file_name": "a.jpg", "labels": [1]}],
            "categories": [{"id": 1, "name": "cat", "isthing": 1}]}))
        r = CliRunner().invoke(cli, ["mine", "--dataset", str(labels), "--images", str(tmp_path),
                                     "--proposals", str(tmp_path), "--out",
                                     str(tmp_path / "run"), "--device", "cpu", "-q"])
        assert r.exit_code == 1
        assert r.output.strip().splitlines() == [
            f"Error: {labels}: images[0].id: expected an integer id, got a non-integer id "
            f"{bad!r}"]
