"""Tags files in the forms people keep them -> the labels json every stage reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from jtsm.data.images import image_source
from jtsm.data.labels import read_image_labels
from jtsm.data.tags import labels_json
from jtsm.errors import DataError


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(d / "a.png")
    ex = Image.Exif()
    ex[0x0112] = 6  # a phone photo stored landscape, shown portrait
    Image.fromarray(np.zeros((10, 40, 3), np.uint8)).save(d / "b.jpg", exif=ex)
    (d / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "sub" / "c.png")
    return d


def _write_and_read(tmp_path, d):
    (tmp_path / "labels.json").write_text(json.dumps(d))
    return read_image_labels(tmp_path / "labels.json")


def test_csv_with_header_semicolons_and_spaces(tmp_path, photos):
    (tmp_path / "t.csv").write_text("file,tags\na.png,dog;sky\nb.jpg,cat dog\n"
                                    "# a comment\n\nsub/c.png,sky\n")
    d = labels_json(tmp_path / "t.csv", photos, stuff=["sky"])
    cats = {c["name"]: c for c in d["categories"]}
    assert [c["name"] for c in d["categories"]] == ["cat", "dog", "sky"]
    assert cats["sky"]["isthing"] == 0 and cats["dog"]["isthing"] == 1
    ims = {im["file_name"]: im for im in d["images"]}
    assert ims["a.png"]["labels"] == sorted([cats["dog"]["id"], cats["sky"]["id"]])
    assert ims["b.jpg"]["labels"] == sorted([cats["cat"]["id"], cats["dog"]["id"]])
    assert (ims["b.jpg"]["height"], ims["b.jpg"]["width"]) == (40, 10)  # as a viewer shows it
    assert (ims["a.png"]["height"], ims["a.png"]["width"]) == (20, 30)
    ls = _write_and_read(tmp_path, d)  # what every stage reads
    assert ls.kind == "labels" and ls.categories.num_stuff == 1 and len(ls.tagged()) == 3


def test_tsv_without_header(tmp_path, photos):
    (tmp_path / "t.tsv").write_text("a.png\tdog\nb.jpg\tcat;dog\n")
    d = labels_json(tmp_path / "t.tsv", photos)
    assert [c["name"] for c in d["categories"]] == ["cat", "dog"]
    assert all(c["isthing"] == 1 for c in d["categories"])
    assert len(d["images"]) == 2


def test_json_with_names_or_ids_and_a_plain_mapping(tmp_path, photos):
    cats = [{"id": 5, "name": "dog"}, {"id": 9, "name": "sky", "isthing": 0}]
    (tmp_path / "n.json").write_text(json.dumps({"images": [
        {"file_name": "a.png", "labels": ["dog", 9]}], "categories": cats}))
    d = labels_json(tmp_path / "n.json", photos)
    assert d["images"][0]["labels"] == [1, 2]
    assert {c["name"]: c["isthing"] for c in d["categories"]} == {"dog": 1, "sky": 0}
    (tmp_path / "m.json").write_text(json.dumps({"a.png": ["dog"], "b.jpg": ["dog", "cat"]}))
    d = labels_json(tmp_path / "m.json", photos)
    assert [im["labels"] for im in d["images"]] == [[2], [1, 2]]


def test_coco_panoptic_keeps_its_categories(tmp_path, photos):
    coco = {"images": [{"id": 7, "file_name": "a.png"}],
            "categories": [{"id": 3, "name": "dog", "isthing": 1},
                           {"id": 40, "name": "grass", "isthing": 0}],
            "annotations": [{"image_id": 7, "file_name": "a.png", "segments_info": [
                {"id": 1, "category_id": 40}, {"id": 2, "category_id": 3}]}]}
    (tmp_path / "p.json").write_text(json.dumps(coco))
    d = labels_json(tmp_path / "p.json", photos)
    assert d["images"][0]["labels"] == [3, 40]
    assert d["categories"] == [{"id": 3, "name": "dog", "isthing": 1},
                               {"id": 40, "name": "grass", "isthing": 0}]


@pytest.mark.parametrize("content,msg", [
    ("a.png,dog\nzzz.png,cat\n", r"t\.csv: line 2: no image 'zzz\.png' in "),
    ("a.png,dog\na.png,cat\n", r"t\.csv: line 2: image 'a\.png' is listed twice \(also line 1\)"),
    ("a.png,dog\n,cat\n", r"t\.csv: line 2: no file name"),
    ("a.png,dog\n../x.png,cat\n", r"t\.csv: line 2: file name '\.\./x\.png' escapes"),
    ("file,tags\n", r"t\.csv: no image lines"),
])
def test_csv_errors_name_file_line_and_value(tmp_path, photos, content, msg):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(DataError, match=msg):
        labels_json(tmp_path / "t.csv", photos)


def test_unknown_stuff_name_and_bad_json_labels_are_named(tmp_path, photos):
    (tmp_path / "t.csv").write_text("a.png,dog\n")
    with pytest.raises(DataError, match=r"t\.csv: --stuff names 'skye', which no image is "
                                        r"tagged with \(tags: dog\)"):
        labels_json(tmp_path / "t.csv", photos, stuff=["skye"])
    (tmp_path / "n.json").write_text(json.dumps({
        "images": [{"file_name": "a.png", "labels": ["dog", "cta"]}],
        "categories": [{"id": 1, "name": "dog"}]}))
    with pytest.raises(DataError, match=r"n\.json: images\[0\] \(a\.png\): unknown category "
                                        r"name 'cta'"):
        labels_json(tmp_path / "n.json", photos)
    (tmp_path / "i.json").write_text(json.dumps({"images": [{"file_name": "a.png",
                                                             "labels": [3]}]}))
    with pytest.raises(DataError, match=r"i\.json: images\[0\] \(a\.png\): category id 3 but"):
        labels_json(tmp_path / "i.json", photos)


def test_stage_readers_take_label_names(tmp_path):
    d = {"images": [{"id": 1, "file_name": "a.png", "labels": ["dog", 2]}],
         "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "sky", "isthing": 0}]}
    assert _write_and_read(tmp_path, d).images[0].labels == (1, 2)
    d["images"][0]["labels"] = ["dgo"]
    with pytest.raises(DataError, match=r"labels\.json: image 1 \(a\.png\): unknown category "
                                        r"name 'dgo' \(categories: dog, sky\)"):
        _write_and_read(tmp_path, d)


def test_images_as_folder_file_or_list(tmp_path, photos):
    assert image_source(photos).names is None
    one = image_source(photos / "b.jpg")
    assert one.root == photos and one.names == ("b.jpg",)
    (tmp_path / "list.txt").write_text(f"# my photos\nphotos/a.png\n{photos / 'sub/c.png'}\n")
    lst = image_source(tmp_path / "list.txt")
    assert lst.root == photos.resolve() and lst.names == ("a.png", "sub/c.png")
    (tmp_path / "bad.txt").write_text("photos/a.png\nphotos/nope.png\n")
    with pytest.raises(DataError, match=r"bad\.txt: line 2: no such image 'photos/nope\.png'"):
        image_source(tmp_path / "bad.txt")
    from jtsm.proposals.runner import list_images

    assert [it.name for it in list_images(photos / "b.jpg")] == ["b.jpg"]
    assert [it.name for it in list_images(tmp_path / "list.txt")] == ["a.png", "sub/c.png"]
