import numpy as np
import pytest

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.voc import BACKGROUND_ID, convert_voc
from jtsm.errors import DataError


def test_convert_voc_with_sbd(tmp_path, voc_src):
    voc, sbd, truth = voc_src
    counts = convert_voc(voc, tmp_path / "out", sbd)
    assert counts == {"train_images": 4, "val_images": 1, "sbd_images": 2}
    train = load_panoptic_json(tmp_path / "out/annotations/panoptic_train.json")
    val = load_panoptic_json(tmp_path / "out/annotations/panoptic_val.json")
    names_train = sorted(im["file_name"] for im in train.images)
    assert names_train == ["2007_000001.jpg", "2007_000002.jpg", "2008_000010.jpg",
                           "2008_000011.jpg"]  # VOC val image excluded from train-aug
    assert [im["file_name"] for im in val.images] == ["2007_000003.jpg"]
    assert train.categories.num_things == 20 and train.categories.num_stuff == 1
    for ds in (train, val):
        for im in ds.images:
            name = im["file_name"][:-4]
            cls, obj, classes = truth[name]
            seg = ds.read(im["id"])
            assert (tmp_path / "out/images" / im["file_name"]).is_file()
            things = [s for s in seg.segments if s["category_id"] != BACKGROUND_ID]
            assert sorted(s["category_id"] for s in things) == sorted(classes)
            for s in things:
                k = classes.index(s["category_id"]) + 1
                m = seg.ids == s["id"]
                if name.startswith("2007"):  # VOC annotation: boundaries are void
                    assert np.array_equal(m, obj == k)
                    assert (seg.ids[cls == 255] == 0).all()
                else:  # SBD annotation
                    assert np.array_equal(m, np.where(obj == 255, 0, obj) == k)
            bg = [s for s in seg.segments if s["category_id"] == BACKGROUND_ID]
            bg_truth = cls == 0 if name.startswith("2007") else np.isin(cls, (0, 255))
            assert len(bg) == 1 and np.array_equal(seg.ids == bg[0]["id"], bg_truth)


def test_convert_voc_without_sbd(tmp_path, voc_src):
    voc, _, _ = voc_src
    counts = convert_voc(voc.parent, tmp_path / "out")  # VOCdevkit-style parent works too
    assert counts["train_images"] == 2 and counts["sbd_images"] == 0


def test_voc_errors(tmp_path, voc_src):
    with pytest.raises(DataError, match="not a VOC2012 folder"):
        convert_voc(tmp_path, tmp_path / "out")
    voc, sbd, _ = voc_src
    (voc / "SegmentationClass" / "2007_000002.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="2007_000002.png: cannot read"):
        convert_voc(voc, tmp_path / "out")
