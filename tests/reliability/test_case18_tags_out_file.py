"""Case 18: ``data tags --out FILE`` wrote over any file: its own tags file, a COCO ground truth
given as the tags, an image, a labels json the user had edited by hand. Now an out file that is
one of its inputs or lies inside the image folder is refused before any work, and an existing
file is replaced only when ``data tags`` wrote it (its ``info`` records that, with a digest of
the content, so a file edited since is not its own any more) or with ``--overwrite``; the file
is written to a temporary name and renamed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from conftest import jtsm


def _photos(root: Path) -> tuple[Path, Path]:
    d = root / "photos"
    d.mkdir()
    for i, name in enumerate(("a.jpg", "b.jpg", "c.png")):
        assert cv2.imwrite(str(d / name), np.full((12, 16, 3), 60 * i, np.uint8))
    tags = root / "tags.csv"
    tags.write_text("file,tags\na.jpg,dog;sky\nb.jpg,dog;sky\nc.png,cat;sky\n")
    return d, tags


def _tags(tags: Path, photos: Path, out: Path, *more: object) -> tuple[int, str]:
    return jtsm("data", "tags", tags, "--images", photos, "--out", out, "--min-images", 1,
                *more)


def _one_line(code: int, text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), text
    for needle in needles:
        assert needle in lines[0], text


def test_an_input_or_a_file_in_the_image_folder_is_refused(tmp_path):
    photos, tags = _photos(tmp_path)
    before = {p: p.read_bytes() for p in [tags, *photos.iterdir()]}
    _one_line(*_tags(tags, photos, tags), f"--out {tags} is the input TAGS_FILE")
    _one_line(*_tags(tags, photos, photos / "labels.json"),
              f"--out {photos / 'labels.json'} is inside the input --images {photos}")
    _one_line(*_tags(tags, photos / "a.jpg", photos / "a.jpg"), "is the input --images")
    # a COCO ground truth given as the tags file is an input too, --overwrite or not
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                              "annotations": [{"image_id": 1, "id": 1, "category_id": 1,
                                               "bbox": [0, 0, 2, 2]}],
                              "categories": [{"id": 1, "name": "dog"}]}))
    gt_bytes = gt.read_bytes()
    _one_line(*_tags(gt, photos, gt, "--overwrite"), f"--out {gt} is the input TAGS_FILE")
    assert gt.read_bytes() == gt_bytes
    assert {p: p.read_bytes() for p in before} == before
    assert not (photos / "labels.json").exists()


def test_an_existing_file_is_replaced_only_when_tags_wrote_it(tmp_path):
    photos, tags = _photos(tmp_path)
    other = tmp_path / "panoptic_val.json"  # someone's ground truth, not an input here
    other.write_text('{"images": [], "annotations": [], "categories": []}')
    _one_line(*_tags(tags, photos, other), f"{other}: exists and was not written by jtsm data "
              "tags", "--overwrite replaces it")
    assert other.read_text().startswith('{"images": []')
    out = tmp_path / "labels.json"
    code, text = _tags(tags, photos, out)
    assert code == 0, text
    first = json.loads(out.read_text())
    assert first["info"]["description"] == "jtsm data tags"
    dog = next(c["id"] for c in first["categories"] if c["name"] == "dog")
    tags.write_text("file,tags\na.jpg,dog\nb.jpg,dog;sky\nc.png,cat;sky\n")
    code, text = _tags(tags, photos, out)  # its own output: replaced without --overwrite
    assert code == 0, text
    assert json.loads(out.read_text())["images"][0]["labels"] == [dog]
    # a labels json edited by hand after data tags wrote it is the user's now
    edited = json.loads(out.read_text())
    edited["images"][0]["labels"].append(3)
    out.write_text(json.dumps(edited))
    _one_line(*_tags(tags, photos, out), "was edited since", "--overwrite replaces it")
    assert json.loads(out.read_text()) == edited
    code, text = _tags(tags, photos, out, "--overwrite")
    assert code == 0, text
    assert json.loads(out.read_text())["images"][0]["labels"] == [dog]
    code, text = _tags(tags, photos, other, "--overwrite")
    assert code == 0 and json.loads(other.read_text())["info"]["description"] == "jtsm data tags"
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temporary file left
        "labels.json", "panoptic_val.json", "photos", "tags.csv"]
