"""Case 20: a json a user hands in with a key given twice in one object (``{"id": 1, ...,
"id": 2}``) was read as the last value without a word, by every reader but the tags reader's;
two categories of one name were two classes that no label by name could tell apart; an
instances ground truth with an image id or a category id listed twice was scored as if it were
one. Now every reader refuses them with one line naming the file and the key, id or name."""

from __future__ import annotations

import json
import shutil

from conftest import TINY, jtsm

SETS = ["-q", *[a for t in TINY for a in ("--set", t)]]


def _one_line(code: int, text: str, *needles: str) -> None:
    lines = text.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), text
    for needle in needles:
        assert needle in lines[0], text


def _gt(rel_data, tmp_path):
    gt = tmp_path / "gt.json"
    shutil.copy(rel_data / "annotations/panoptic_val.json", gt)
    shutil.copytree(rel_data / "annotations/panoptic_val", tmp_path / "gt")
    return gt


def test_a_key_given_twice_is_refused_by_every_reader(tmp_path, rel_data):
    gt = _gt(rel_data, tmp_path)
    text = gt.read_text()
    d = json.loads(text)
    first = d["images"][0]
    dup = json.dumps(first)[:-1] + f', "id": {d["images"][1]["id"]}}}'
    pred = tmp_path / "pred.json"
    pred.write_text(text.replace(json.dumps(first), dup, 1))
    assert pred.read_text() != text
    shutil.copytree(tmp_path / "gt", tmp_path / "pred")
    _one_line(*jtsm("eval", "--metric", "pq", "--gt", gt, "--pred", pred, "--workers", 1),
              f"{pred}: key 'id' is given twice in one object")
    _one_line(*jtsm("mine", "--dataset", pred, "--images", rel_data / "images", "--proposals",
                    rel_data / "props", "--out", tmp_path / "run", *SETS),
              f"{pred}: key 'id' is given twice in one object")
    assert not (tmp_path / "run").exists()
    # a config file in JSON
    cfg = tmp_path / "my.json"
    cfg.write_text('{"solver": {"lr": 0.1, "lr": 0.01}}')
    _one_line(*jtsm("config", "show", "--config", cfg), f"{cfg}:",
              "key 'lr' is given twice in one object")


def test_categories_and_images_listed_twice_are_refused(tmp_path, rel_data):
    gt = _gt(rel_data, tmp_path)
    d = json.loads(gt.read_text())
    cats = d["categories"]
    named = dict(d, categories=[*cats[:-1], dict(cats[-1], name=cats[0]["name"])])
    same = tmp_path / "same.json"
    same.write_text(json.dumps(named))
    shutil.copytree(tmp_path / "gt", tmp_path / "same")
    name = cats[0]["name"]
    _one_line(*jtsm("eval", "--metric", "pq", "--gt", same, "--pred", gt, "--workers", 1),
              f"{same}: categories[{len(cats) - 1}]: category name {name!r} is listed twice "
              "(also categories[0])")
    _one_line(*jtsm("mine", "--dataset", same, "--images", rel_data / "images", "--proposals",
                    rel_data / "props", "--out", tmp_path / "run", *SETS),
              f"category name {name!r} is listed twice")
    # an instances ground truth: an image id, a file name or a category id listed twice
    im = d["images"][0]
    inst = {"images": [im, dict(d["images"][1], id=im["id"])],
            "annotations": [{"id": 1, "image_id": im["id"], "category_id": cats[0]["id"],
                             "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}],
            "categories": [dict(c, isthing=1) for c in cats]}
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": im["id"], "category_id": cats[0]["id"],
                                    "bbox": [1, 1, 5, 5], "score": 0.9}]))
    bad = tmp_path / "inst.json"
    bad.write_text(json.dumps(inst))
    _one_line(*jtsm("eval", "--metric", "corloc", "--gt", bad, "--pred", results),
              f"{bad}: images[1]: image id {im['id']} is listed twice")
    inst["images"][1] = dict(d["images"][1], file_name=im["file_name"])
    bad.write_text(json.dumps(inst))
    _one_line(*jtsm("eval", "--metric", "map", "--gt", bad, "--pred", results),
              f"{bad}: images[1]: file {im['file_name']!r} is listed twice")
    inst["images"][1] = d["images"][1]
    inst["categories"].append(dict(inst["categories"][0], name="another"))
    bad.write_text(json.dumps(inst))
    _one_line(*jtsm("eval", "--metric", "map", "--gt", bad, "--pred", results),
              f"category id {cats[0]['id']} is listed twice")
