import json

import numpy as np
import pytest

from jtsm.data.coco_panoptic import (
    id2rgb,
    load_panoptic_json,
    read_panoptic_png,
    rgb2id,
    write_panoptic_dataset,
    write_panoptic_png,
)
from jtsm.errors import DataError
from jtsm.structures import PanopticSeg

CATS = [{"id": 1, "name": "a", "isthing": 1}, {"id": 7, "name": "b", "isthing": 0}]


def test_id_rgb_roundtrip_and_formula():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 16777215, 12345678]])
    rgb = id2rgb(ids)
    assert rgb[0, 3].tolist() == [0, 1, 0]
    assert np.array_equal(rgb2id(rgb), ids)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    assert np.array_equal(r + 256 * g + 256**2 * b, ids)


def test_png_matches_pil_decoding(tmp_path):
    from PIL import Image

    ids = np.random.default_rng(0).integers(0, 1 << 24, (9, 13))
    write_panoptic_png(tmp_path / "x.png", ids)
    pil = np.array(Image.open(tmp_path / "x.png").convert("RGB"))
    assert np.array_equal(rgb2id(pil), ids)
    assert np.array_equal(read_panoptic_png(tmp_path / "x.png"), ids)


def test_dataset_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    images, segs = [], []
    for i in range(3):
        ids = rng.integers(0, 4, (10, 12)) * 1000
        seg = PanopticSeg(ids, [{"id": k * 1000, "category_id": 1 if k % 2 else 7, "iscrowd": 0}
                                for k in (1, 2, 3)])
        images.append({"id": i + 1, "file_name": f"img{i}.jpg", "height": 10, "width": 12})
        segs.append(seg)
    write_panoptic_dataset(tmp_path / "ann" / "pan.json", images, CATS, segs)
    ds = load_panoptic_json(tmp_path / "ann" / "pan.json")
    assert ds.png_dir == tmp_path / "ann" / "pan"
    for im, seg in zip(images, segs):
        got = ds.read(im["id"])
        assert np.array_equal(got.ids, seg.ids)
        assert [s["id"] for s in got.segments] == [s["id"] for s in seg.with_stats().segments]
        for s in got.segments:
            assert s["area"] == int((seg.ids == s["id"]).sum())
    assert ds.labels(1) == [1, 7]
    assert ds.categories.names == ["a", "b"]


def _write(tmp_path, d):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(d))
    return p


def test_rejects_malformed(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"images": [')
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        load_panoptic_json(p)
    d = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": CATS,
         "annotations": [{"image_id": 1, "file_name": "a.png",
                          "segments_info": [{"id": 1, "category_id": 99}]}]}
    with pytest.raises(DataError, match="unknown category id 99"):
        load_panoptic_json(_write(tmp_path, d))
    d["annotations"][0]["image_id"] = 5
    with pytest.raises(DataError, match="image_id 5 is not in images"):
        load_panoptic_json(_write(tmp_path, d))


def test_png_id_absent_from_segments_and_wrong_size(tmp_path):
    d = {"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}],
         "categories": CATS,
         "annotations": [{"image_id": 1, "file_name": "a.png",
                          "segments_info": [{"id": 1, "category_id": 1}]}]}
    p = _write(tmp_path, d)
    write_panoptic_png(tmp_path / "p" / "a.png", np.array([[1, 2, 0, 0]] * 4))
    with pytest.raises(DataError, match=r"a.png: PNG has segment id\(s\) \[2\]"):
        load_panoptic_json(p).read(1)
    write_panoptic_png(tmp_path / "p" / "a.png", np.ones((3, 4), int))
    with pytest.raises(DataError, match="a.png: PNG is 4x3"):
        load_panoptic_json(p).read(1)


def test_png_name_escaping_root_refused(tmp_path):
    d = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": CATS,
         "annotations": [{"image_id": 1, "file_name": "../../etc/passwd", "segments_info": []}]}
    with pytest.raises(DataError, match="escapes"):
        load_panoptic_json(_write(tmp_path, d)).read(1)
