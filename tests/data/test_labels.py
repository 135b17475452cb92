import json

import pytest

from jtsm.data.labels import read_image_labels
from jtsm.errors import DataError

CATS = [{"id": 1, "name": "dog", "isthing": 1}, {"id": 2, "name": "cat", "isthing": 1},
        {"id": 9, "name": "grass", "isthing": 0}]
IMAGES = [{"id": 10, "file_name": "a.jpg"}, {"id": 11, "file_name": "b.jpg"},
          {"id": 12, "file_name": "c.jpg"}]


def _write(tmp_path, d, name="x.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def _tags(ls):
    return {im.id: im.labels for im in ls.images}


def test_panoptic_json(tmp_path):
    d = {"images": IMAGES, "categories": CATS, "annotations": [
        {"image_id": 10, "file_name": "a.png", "segments_info": [
            {"id": 1, "category_id": 9}, {"id": 2, "category_id": 1}, {"id": 3, "category_id": 1}]},
        {"image_id": 11, "file_name": "b.png", "segments_info": []}]}
    ls = read_image_labels(_write(tmp_path, d))
    assert ls.kind == "panoptic"
    assert _tags(ls) == {10: (1, 9), 11: (), 12: ()}
    assert [im.id for im in ls.tagged()] == [10]


def test_instances_json(tmp_path):
    d = {"images": IMAGES, "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
         "annotations": [{"id": 1, "image_id": 11, "category_id": 2, "bbox": [0, 0, 1, 1]},
                         {"id": 2, "image_id": 11, "category_id": 1, "bbox": [0, 0, 1, 1]},
                         {"id": 3, "image_id": 12, "category_id": 2, "bbox": [0, 0, 1, 1]}]}
    ls = read_image_labels(_write(tmp_path, d))
    assert ls.kind == "instances"
    assert _tags(ls) == {10: (), 11: (1, 2), 12: (2,)}
    assert ls.categories.num_things == 2


def test_labels_json(tmp_path):
    images = [dict(IMAGES[0], labels=[9, 2]), dict(IMAGES[1], labels=[]), IMAGES[2]]
    ls = read_image_labels(_write(tmp_path, {"images": images, "categories": CATS}))
    assert ls.kind == "labels"
    assert _tags(ls) == {10: (2, 9), 11: (), 12: ()}


@pytest.mark.parametrize("bad, msg", [
    ({"images": [dict(IMAGES[0], labels=[5])], "categories": CATS}, "unknown category id 5"),
    ({"images": [dict(IMAGES[0], labels="dog")], "categories": CATS}, "must be a list"),
    ({"images": IMAGES, "categories": CATS,
      "annotations": [{"image_id": 99, "category_id": 1}]}, "image_id 99 is not in images"),
    ({"images": [{"file_name": "a.jpg"}], "categories": CATS}, r"images\[0\] needs"),
    ({"images": IMAGES}, "expected a COCO-style object"),
])
def test_errors_name_the_file_and_entry(tmp_path, bad, msg):
    with pytest.raises(DataError, match=msg) as exc:
        read_image_labels(_write(tmp_path, bad, "bad.json"))
    assert "bad.json" in str(exc.value)
