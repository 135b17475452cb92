"""Case 11: ``data tags`` read what it could not read exactly. A stray ``"`` swallowed the
lines after it into one field (classes named ``c.png,sky``, images dropped); a json key given
twice kept the last one's tags; ``./a.png`` beside ``a.png`` made one photo two images;
``traffic light;sky`` became ``traffic``, ``light`` and ``sky``; ``Dog`` and ``dog`` were two
classes. And ``eval`` on the labels json it writes said ``missing key(s) annotations``. Now each
is refused (one line naming the file and the line or key), read as written, or named."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import jtsm


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        assert cv2.imwrite(str(d / name), np.full((12, 16, 3), 50 * i, np.uint8))
    return d


def _tags(tmp_path, photos, name, text, *more):
    (tmp_path / name).write_text(text)
    out = tmp_path / "labels.json"
    code, output = jtsm("data", "tags", tmp_path / name, "--images", photos, "--out", out, *more)
    return code, output, out


@pytest.mark.parametrize("name,text,msg", [
    ("t.csv", 'a.png,dog\nb.png,"dog;cat\nc.png,sky\nd.png,cat\n',
     "t.csv: line 2: a '\"' opens a quoted field that is not closed on this line (it runs on "
     "to the end of the file)"),
    ("t.csv", 'a.png,dog\nb.png,"dog\nc.png,cat"\nd.png,sky\n',
     "t.csv: line 2: a '\"' opens a quoted field that is not closed on this line (it runs on "
     "to line 3)"),
    ("t.json", '{"a.png": ["dog"], "b.png": ["cat"], "a.png": ["sky"]}',
     "t.json: key 'a.png' is given twice in one object"),
    ("t.csv", "a.png,dog\nb.png,cat\n./a.png,sky\n",
     "t.csv: line 3: image './a.png' is listed twice (also line 1, as 'a.png')"),
    ("t.json", '{"a.png": ["dog", ""]}', "t.json: image 'a.png': empty tag name \"\""),
])
def test_what_cannot_be_read_exactly_is_refused(tmp_path, photos, name, text, msg):
    code, output, out = _tags(tmp_path, photos, name, text)
    lines = output.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), output
    assert msg in lines[0] and not out.exists()


def test_names_are_read_as_written(tmp_path, photos):
    code, output, out = _tags(tmp_path, photos, "t.csv",
                              "a.png,traffic light;Sky\nb.png,Traffic Light|dog\n"
                              "c.png,dog sky\nd.png,DOG;sky\n", "--stuff", "sky")
    assert code == 0, output
    assert "Note: tag names that differ only in case are one class: 'traffic light' (also " \
           "'Traffic Light'), 'Sky' (also 'sky'), 'dog' (also 'DOG')" in output
    cats = json.loads(out.read_text())["categories"]
    assert [(c["name"], c["isthing"]) for c in cats] == [("dog", 1), ("traffic light", 1),
                                                         ("Sky", 0)]


def test_strict_refuses_unlisted_photos_and_rare_classes(tmp_path, photos):
    text = "a.png,dog;kite\nb.png,dog\nc.png,dog\n"
    code, output, out = _tags(tmp_path, photos, "t.csv", text)
    assert code == 0 and "Warning: 1 image under" in output and ": d.png" in output
    assert "'kite' (1 image)" in output and out.is_file()
    out.unlink()
    code, output, out = _tags(tmp_path, photos, "t.csv", text, "--strict")
    assert code == 1 and not out.exists()
    assert output.count("Error: ") == 1 and "(--strict: " in output


@pytest.mark.parametrize("metric", ["pq", "ap", "map", "corloc", "recall"])
def test_eval_on_a_tags_only_file_says_what_it_needs(tmp_path, photos, metric):
    code, output, labels = _tags(tmp_path, photos, "t.csv",
                                 "a.png,dog\nb.png,dog\nc.png,dog\nd.png,dog\n")
    assert code == 0, output
    empty = tmp_path / "with_empty_annotations.json"  # "annotations": [] beside the tags
    empty.write_text(json.dumps({**json.loads(labels.read_text()), "annotations": []}))
    for gt in (labels, empty):
        code, output = jtsm("eval", "--metric", metric, "--gt", gt, "--pred", tmp_path / "p")
        lines = output.strip().splitlines()
        assert code == 1 and len(lines) == 1, output
        assert lines[0] == (f"Error: {gt}: holds image-level tags only (images with 'labels', "
                            "no 'annotations'); PQ and proposal recall need ground-truth masks "
                            "(a COCO panoptic json), AP, mAP and CorLoc masks or boxes (a COCO "
                            "panoptic or instances json)")
