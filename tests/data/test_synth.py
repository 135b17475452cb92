import hashlib

import numpy as np

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.synth import SynthConfig, categories, render_image, write_synth_dataset
from jtsm.fileio import read_image


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
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
