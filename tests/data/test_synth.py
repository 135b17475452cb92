import hashlib

import numpy as np

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.synth import SynthConfig, categories, render_image, write_synth_dataset
from jtsm.fileio import read_image


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != ".jtsm-synth":  # the record of the files holds their times
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed(tmp_path):
    cfg = SynthConfig(height=64, width=80)
    write_synth_dataset(tmp_path / "a", 4, 2, cfg, seed=5)
    write_synth_dataset(tmp_path / "b", 4, 2, cfg, seed=5)
    write_synth_dataset(tmp_path / "c", 4, 2, cfg, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    # an image does not depend on how many were made
    img, seg = render_image(5, 0, 3, cfg)
    img2, seg2 = render_image(5, 0, 3, cfg)
    assert np.array_equal(img, img2) and np.array_equal(seg.ids, seg2.ids)
    write_synth_dataset(tmp_path / "d", 6, 0, cfg, seed=5)
    assert (tmp_path / "a/images/train_000003.jpg").read_bytes() == \
        (tmp_path / "d/images/train_000003.jpg").read_bytes()


def test_pngs_decode_to_exactly_the_json_segments(synth_dir):
    for split in ("train", "val"):
        ds = load_panoptic_json(synth_dir / "annotations" / f"panoptic_{split}.json")
        assert len(ds) > 0
        for im in ds.images:
            seg = ds.read(im["id"])  # checks PNG ids are a subset of segments_info
            present = set(np.unique(seg.ids).tolist()) - {0}
            assert present == {s["id"] for s in seg.segments}
            for s in seg.segments:
                m = seg.ids == s["id"]
                assert s["area"] == int(m.sum())
                ys, xs = np.nonzero(m)
                assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
            img = read_image(synth_dir / "images" / im["file_name"])
            assert img.shape == (im["height"], im["width"], 3)


def test_content_things_over_stuff(synth_dir):
    ds = load_panoptic_json(synth_dir / "annotations" / "panoptic_train.json")
    cats = {c["id"]: c for c in categories()}
    n_things, n_stuff, multi_instance = 0, 0, 0
    for im in ds.images:
        seg = ds.read(im["id"])
        things = [s for s in seg.segments if cats[s["category_id"]]["isthing"]]
        stuff = [s for s in seg.segments if not cats[s["category_id"]]["isthing"]]
        assert len(stuff) >= 1 and len(things) >= 1
        # one segment per stuff class, as in COCO panoptic
        assert len({s["category_id"] for s in stuff}) == len(stuff)
        n_things += len(things)
        n_stuff += len(stuff)
        multi_instance += len(things) > len({s["category_id"] for s in things})
    assert n_things > len(ds) and multi_instance > 0


def _colour_classifier_accuracy(lo: int, hi: int) -> tuple[float, float]:
    """Nearest class-mean colour accuracy on segments of categories lo..hi, and chance."""
    cfg = SynthConfig(height=96, width=96)
    feats, labels = [], []
    for i in range(80):
        img, seg = render_image(11, 0, i, cfg)
        for s in seg.segments:
            if lo <= s["category_id"] <= hi:
                feats.append(img[seg.ids == s["id"]].mean(0))
                labels.append(s["category_id"])
    feats, labels = np.array(feats), np.array(labels)
    classes = sorted(set(labels.tolist()))
    means = np.stack([feats[labels == c].mean(0) for c in classes])
    pred = np.array(classes)[np.argmin(((feats[:, None] - means[None]) ** 2).sum(-1), 1)]
    return float((pred == labels).mean()), 1 / len(classes)


def test_colour_informs_but_never_names_a_class():
    """A nearest-mean-colour classifier (fit on the same data: optimistic) beats chance, as
    colour hints do in real data, but gets under half of the segments right."""
    for lo, hi in ((1, 5), (6, 9)):  # things, stuff
        acc, chance = _colour_classifier_accuracy(lo, hi)
        assert chance < acc < 0.5


def test_default_classes_render_as_before_the_class_pools():
    """Choosing the classes by name did not change the default dataset: the segments of two
    fixed images (recorded before THING_SHAPES / STUFF_TEXTURES existed) are unchanged."""
    before = {
        7: [(6, 884), (8, 5950), (9, 3664), (1, 989), (5, 387), (4, 552), (4, 748), (1, 1894),
            (5, 1316)],
        8: [(8, 7830), (7, 3340), (6, 4580), (4, 369), (4, 265)],
    }
    for index, segments in before.items():
        _, seg = render_image(0, 0, index)
        assert [(s["category_id"], s["area"]) for s in seg.segments] == segments


def test_other_classes_and_sizes(tmp_path):
    """Every shape and texture of the pools draws; ids follow the chosen classes."""
    from jtsm.data.synth import STUFF_TEXTURES, THING_SHAPES

    cfg = SynthConfig(height=64, width=96, things=THING_SHAPES[5:], stuff=STUFF_TEXTURES[4:],
                      object_scale=0.8)
    cats = categories(cfg)
    assert [c["name"] for c in cats] == [*THING_SHAPES[5:], *STUFF_TEXTURES[4:]]
    seen = set()
    for i in range(30):
        img, seg = render_image(2, 0, i, cfg)
        assert img.shape == (64, 96, 3)
        seen |= {s["category_id"] for s in seg.segments}
    assert seen == {c["id"] for c in cats}  # each class occurs and draws visible pixels
    write_synth_dataset(tmp_path / "d", 3, 1, cfg, seed=2)
    ds = load_panoptic_json(tmp_path / "d/annotations/panoptic_train.json")
    assert ds.categories.names == [c["name"] for c in cats]


def test_bad_class_names_are_refused():
    import pytest

    with pytest.raises(ValueError, match="unknown thing class 'blob'"):
        SynthConfig(things=("disc", "blob"))
    with pytest.raises(ValueError, match="2\\+ distinct"):
        SynthConfig(stuff=("grain",))
    with pytest.raises(ValueError, match="2\\+ distinct"):
        SynthConfig(stuff=("grain", "grain"))
