"""Tags files in the forms people keep them -> the labels json every stage reads."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from jtsm.data.images import image_source
from jtsm.data.labels import read_image_labels
from jtsm.data.tags import labels_json, read_tags
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


# --- tag names as people write them -----------------------------------------------------------

@pytest.fixture
def four(tmp_path):
    """A folder of four small generated images: a.png, b.png, c.png, sub/d.png."""
    import cv2

    d = tmp_path / "four"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        assert cv2.imwrite(str(d / name), rng.integers(0, 255, (9, 11, 3), np.uint8))
    return d


def _names(d):
    """{file_name: {class names}} and the class names of a labels json."""
    by_id = {c["id"]: c["name"] for c in d["categories"]}
    return {im["file_name"]: {by_id[i] for i in im["labels"]} for im in d["images"]}


@pytest.mark.parametrize("file,content", [
    ("t.csv", "a.png,traffic light;sky\n"),
    ("t.csv", "a.png,traffic light|sky\n"),
    ("t.csv", "file,tags\na.png,\"traffic light;sky\"\n"),
    ("t.csv", "a.png,\"traffic light, sky\"\n"),  # a comma in a quoted field separates too
    ("t.csv", "a.png,traffic light,sky\n"),  # as do more tag columns
    ("t.tsv", "a.png\ttraffic light;sky\n"),
    ("t.tsv", "a.png\ttraffic light|sky\n"),
    ("t.tsv", "a.png\ttraffic light\tsky\n"),
    ("t.csv", "a.png,  traffic    light ;; sky;\n"),  # runs of spaces, empty tags
])
def test_separators_keep_the_spaces_inside_a_name(tmp_path, four, file, content):
    (tmp_path / file).write_text(content)
    d = labels_json(tmp_path / file, four)
    assert _names(d) == {"a.png": {"traffic light", "sky"}}


@pytest.mark.parametrize("file,content", [
    ("t.csv", "a.png,person sea sand sky\n"),
    ("t.csv", "a.png,\"person sea sand  sky\"\n"),
    ("t.tsv", "a.png\tperson sea sand sky\n"),
    ("t.csv", "a.png,person sea sand sky,\n"),  # an empty further column is no separator
])
def test_a_field_without_separators_is_a_space_separated_list(tmp_path, four, file, content):
    (tmp_path / file).write_text(content)
    assert _names(labels_json(tmp_path / file, four)) == {
        "a.png": {"person", "sea", "sand", "sky"}}


def _same_tags_in_every_form(tmp_path):
    """The same tags (a.png: traffic light, sky; b.png: Traffic Light, dog; sub/d.png: dog)
    written in each form a tags file may take; yields (label, path)."""
    cats = [{"id": 4, "name": "traffic  light ", "isthing": 1}, {"id": 7, "name": "sky",
                                                                   "isthing": 1},
            {"id": 9, "name": "dog", "isthing": 1}]
    files = {
        "c.csv": "file,tags\na.png,traffic light;sky\nb.png,Traffic Light;dog\nsub/d.png,dog\n",
        "q.csv": 'a.png,"traffic light, sky"\nb.png,"Traffic Light",dog\nsub/d.png,"dog"\n',
        "t.tsv": "a.png\ttraffic light|sky\nb.png\tTraffic   Light|dog\nsub/d.png\tdog\n",
        "m.json": json.dumps({"a.png": ["traffic light", "sky"], "b.png": [" Traffic Light",
                                                                          "dog"],
                              "sub/d.png": ["dog"]}),
        "s.json": json.dumps({"images": [
            {"file_name": "a.png", "labels": "traffic light;sky"},
            {"file_name": "b.png", "labels": ["Traffic Light", "dog"]},
            {"file_name": "sub/d.png", "labels": ["dog"]}]}),
        "i.json": json.dumps({"images": [
            {"file_name": "a.png", "labels": [4, "sky"]},
            {"file_name": "b.png", "labels": ["Traffic Light", 9]},
            {"file_name": "sub/d.png", "labels": ["9"]}], "categories": cats}),
        "p.json": json.dumps({"images": [{"id": 1, "file_name": "a.png"},
                                         {"id": 2, "file_name": "b.png"},
                                         {"id": 3, "file_name": "sub/d.png"}],
                              "categories": cats,
                              "annotations": [{"image_id": i, "file_name": f"{i}.png",
                                               "segments_info": [
                                                   {"id": j + 1, "category_id": c}
                                                   for j, c in enumerate(cs)]}
                                              for i, cs in ((1, [4, 7]), (2, [4, 9]), (3, [9]))]}),
        "n.json": json.dumps({"images": [{"id": 1, "file_name": "a.png"},
                                         {"id": 2, "file_name": "b.png"},
                                         {"id": 3, "file_name": "sub/d.png"}],
                              "categories": cats,
                              "annotations": [{"id": k, "image_id": i, "category_id": c,
                                               "bbox": [0, 0, 2, 2]}
                                              for k, (i, c) in enumerate(
                                                  [(1, 4), (1, 7), (2, 4), (2, 9), (3, 9)])]}),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        yield name, tmp_path / name


def test_every_reader_gives_the_same_class_names(tmp_path, four):
    want = {"a.png": {"traffic light", "sky"}, "b.png": {"traffic light", "dog"},
            "sub/d.png": {"dog"}}
    for label, path in _same_tags_in_every_form(tmp_path):
        d, report = read_tags(path, four)
        assert _names(d) == want, label
        assert sorted(c["name"] for c in d["categories"]) == ["dog", "sky", "traffic light"]
        merged = {} if label.endswith(("p.json", "n.json")) else {
            "traffic light": ("Traffic Light",)}  # COCO names classes by its categories only
        assert report.merged == merged, label


def test_case_variants_are_one_class_spelled_as_first_seen_with_a_notice(tmp_path, four):
    (tmp_path / "t.csv").write_text("a.png,DOG;sky\nb.png,Dog\nc.png,dog;Sky\n")
    d, report = read_tags(tmp_path / "t.csv", four, stuff=["SKY"])
    assert [(c["name"], c["isthing"]) for c in d["categories"]] == [("DOG", 1), ("sky", 0)]
    assert [len(im["labels"]) for im in d["images"]] == [2, 1, 2]
    assert report.merged == {"DOG": ("Dog", "dog"), "sky": ("Sky",)}
    notices = report.notices()
    assert len(notices) == 1 and "'DOG' (also 'Dog', 'dog')" in notices[0] \
        and "'sky' (also 'Sky')" in notices[0]
    (tmp_path / "u.csv").write_text("a.png,dog\nb.png,cat\n")
    assert read_tags(tmp_path / "u.csv", four)[1].notices() == []


def test_labels_json_names_meet_their_category_in_any_case(tmp_path, four):
    (tmp_path / "n.json").write_text(json.dumps({
        "images": [{"file_name": "a.png", "labels": ["DOG", "dog"]}],
        "categories": [{"id": 3, "name": "dog"}]}))
    d, report = read_tags(tmp_path / "n.json", four)
    assert d["categories"] == [{"id": 1, "name": "dog", "isthing": 1}]
    assert d["images"][0]["labels"] == [1] and report.merged == {"dog": ("DOG",)}


@pytest.mark.parametrize("file,content,line,upto", [
    ("t.csv", 'a.png,dog\nb.png,"dog;cat\nc.png,sky\nd.png,cat\n', 2, "the end of the file"),
    ("t.csv", 'a.png,dog\nb.png,"dog\nc.png,"sky"\n', 2, "line 3"),
    ("t.csv", 'a.png,dog\n# a "comment\nb.png,"dog\nc.png,cat"\nsub/d.png,sky\n', 3, "line 4"),
    ("t.tsv", 'a.png\tdog\nb.png\tcat\nc.png\t"dog|cat\nsub/d.png\tsky\n', 3,
     "the end of the file"),
])
def test_an_unclosed_quote_is_refused_naming_its_line(tmp_path, four, file, content, line,
                                                      upto):
    (tmp_path / file).write_text(content)
    with pytest.raises(DataError, match=rf"{file}: line {line}: a '\"' opens a quoted field "
                                        rf"that is not closed on this line \(it runs on to "
                                        rf"{upto}\)"):
        labels_json(tmp_path / file, four)


def test_a_quote_inside_a_tag_or_after_a_closed_one_is_refused(tmp_path, four):
    (tmp_path / "t.csv").write_text('a.png,dog\nb.png,dog;"cat\n')
    with pytest.raises(DataError, match=r"t\.csv: line 2: tag '\"cat' holds a '\"'"):
        labels_json(tmp_path / "t.csv", four)
    (tmp_path / "t.csv").write_text('a.png,"dog"cat\n')
    with pytest.raises(DataError, match=r"t\.csv: line 1: malformed quoting"):
        labels_json(tmp_path / "t.csv", four)


@pytest.mark.parametrize("content,msg", [
    ('{"a.png": ["dog"], "a.png": ["cat"]}', r"key 'a\.png' is given twice in one object"),
    ('{"images": [{"file_name": "a.png", "labels": ["dog"]}], "categories": '
     '[{"id": 1, "name": "dog", "name": "cat"}]}', r"key 'name' is given twice"),
    ('{"images": [{"file_name": "a.png", "labels": [1]}], "categories": '
     '[{"id": 1, "name": "dog"}, {"id": 1, "name": "cat"}]}',
     r"categories\[1\]: category id 1 is listed twice \(also categories\[0\]\)"),
    ('{"images": [{"file_name": "a.png", "labels": ["dog"]}], "categories": '
     '[{"id": 1, "name": "dog"}, {"id": 2, "name": " Dog"}]}',
     r"categories\[1\]: category ' Dog' is the class of categories\[0\] \('dog'\)"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "dog"}, '
     '{"id": 2, "name": "DOG"}], "annotations": [{"image_id": 1, "category_id": 1, '
     '"bbox": [0, 0, 1, 1]}]}', r"categories\[1\]: category 'DOG' is the class of"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "dog"}, '
     '{"id": 1, "name": "cat"}], "annotations": [{"image_id": 1, "category_id": 1, '
     '"bbox": [0, 0, 1, 1]}]}', r"categories\[1\]: category id 1 is listed twice"),
])
def test_json_duplicates_are_refused(tmp_path, four, content, msg):
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(DataError, match=r"t\.json: .*" + msg):
        labels_json(tmp_path / "t.json", four)


@pytest.mark.parametrize("alias", ["./a.png", "sub/../a.png", "a.png/", ".//a.png"])
def test_one_file_under_two_names_is_listed_twice(tmp_path, four, alias):
    (tmp_path / "t.csv").write_text(f"a.png,dog\nb.png,cat\n{alias},sky\n")
    with pytest.raises(DataError, match=rf"t\.csv: line 3: image '{re.escape(alias)}' is listed "
                                        r"twice \(also line 1, as 'a\.png'\)"):
        labels_json(tmp_path / "t.csv", four)
    (tmp_path / "t.json").write_text(json.dumps({"a.png": ["dog"], alias: ["sky"]}))
    with pytest.raises(DataError, match=rf"image '{re.escape(alias)}' is listed twice"):
        labels_json(tmp_path / "t.json", four)
    (tmp_path / "t.csv").write_text(f"{alias},dog\n")  # alone it is the file, written plainly
    assert [im["file_name"] for im in labels_json(tmp_path / "t.csv", four)["images"]] == [
        "a.png"]


@pytest.mark.parametrize("content,msg", [
    ({"a.png": ["dog", ""]}, r"image 'a\.png': empty tag name \"\""),
    ({"a.png": ["dog", None]}, r"image 'a\.png': empty tag name null"),
    ({"a.png": ["dog", "  "]}, r"image 'a\.png': empty tag name \"  \""),
    ({"a.png": ["dog", 2.5]}, r"image 'a\.png': tag 2\.5 is not a name"),
    ({"a.png": [["dog"]]}, r"image 'a\.png': tag \['dog'\] is not a name"),
    ({"a.png": "dog", "b.png": 7}, r"image 'b\.png': tags must be a list of names, got 7"),
    ({"images": [{"file_name": "a.png", "labels": ["dog", None]}]},
     r"images\[0\] \(a\.png\): empty tag name null"),
    ({"images": [{"file_name": "a.png", "labels": [True]}]},
     r"images\[0\] \(a\.png\): tag True is not a name"),
    ({"images": [{"file_name": "a.png", "labels": [1]}], "categories": [{"id": 1, "name": 5}]},
     r"categories\[0\]: category 5 is not a name"),
])
def test_empty_and_non_string_names_are_refused(tmp_path, four, content, msg):
    (tmp_path / "t.json").write_text(json.dumps(content))
    with pytest.raises(DataError, match=r"t\.json: " + msg):
        labels_json(tmp_path / "t.json", four)


def test_empty_tags_in_a_csv_are_dropped(tmp_path, four):
    (tmp_path / "t.csv").write_text("a.png,cat;;dog;\nb.png,;\n")
    assert _names(labels_json(tmp_path / "t.csv", four)) == {"a.png": {"cat", "dog"},
                                                             "b.png": set()}


# --- the report -----------------------------------------------------------------------------

def test_report_names_unlisted_images_and_classes_on_few_images(tmp_path, four):
    (tmp_path / "t.csv").write_text("a.png,dog;kite\nb.png,dog;sky\nc.png,dog;sky\n")
    d, report = read_tags(tmp_path / "t.csv", four)
    assert report.unlisted == ("sub/d.png",)
    assert report.images_per_class == {"kite": 1, "sky": 2, "dog": 3}
    assert report.rare == {"kite": 1}
    lines = report.warnings("t.csv", "four")
    assert len(lines) == 2
    assert lines[0] == "1 image under four is not in t.csv, so no stage will use it: sub/d.png"
    assert lines[1].startswith("1 class tagged on one image only will not be learned") \
        and "'kite' (1 image)" in lines[1]
    d3, report3 = read_tags(tmp_path / "t.csv", four, min_images=3)
    assert d3 == d  # the labels do not depend on the report
    assert report3.rare == {"kite": 1, "sky": 2}
    assert "1 class tagged on fewer than 3 images (--min-images) may not be learned: " \
           "'sky' (2 images)" in report3.warnings()
    (tmp_path / "all.csv").write_text("a.png,dog\nb.png,dog\nc.png,dog\nsub/d.png,dog\n")
    assert read_tags(tmp_path / "all.csv", four)[1].warnings() == []


def test_report_lists_the_first_few_of_many_unlisted_images(tmp_path):
    import cv2

    (tmp_path / "im").mkdir()
    for i in range(8):
        cv2.imwrite(str(tmp_path / "im" / f"p{i}.jpg"), np.full((6, 6, 3), i, np.uint8))
    (tmp_path / "t.csv").write_text("p0.jpg,dog\np1.jpg,dog\n")
    report = read_tags(tmp_path / "t.csv", tmp_path / "im")[1]
    assert report.unlisted == tuple(f"p{i}.jpg" for i in range(2, 8))
    assert report.warnings("t.csv", "im")[0] == (
        "6 images under im are not in t.csv, so no stage will use them: p2.jpg, p3.jpg, "
        "p4.jpg, p5.jpg, p6.jpg and 1 more")
