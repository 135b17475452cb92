"""The photo-like style of ``jtsm data synth`` (jtsm.data.synth_photo)."""

import hashlib
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.labels import read_image_labels
from jtsm.data.synth import SynthConfig, categories, render_image, write_synth_dataset
from jtsm.data.synth_photo import (
    PHOTO_STUFF,
    PHOTO_THINGS,
    PhotoConfig,
    photo_categories,
    render_photo,
    render_scene,
)
from jtsm.evaluation.cocogt import load_panoptic_gt
from jtsm.fileio import read_image
from jtsm_cli.main import cli


def _digest(folder):
    """Every file's bytes but synth's record of what it wrote (which holds file times)."""
    from jtsm.rundir.layout import output_record

    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != output_record("data synth"):
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """A small photo-style dataset: 12 train + 4 val images of 96 x 128 px, seed 3."""
    out = tmp_path_factory.mktemp("photo") / "d"
    write_synth_dataset(out, 12, 4, PhotoConfig(height=96, width=128), seed=3)
    return out


def test_deterministic_per_seed_and_independent_of_the_count(tmp_path, photo_dir):
    cfg = PhotoConfig(height=96, width=128)
    write_synth_dataset(tmp_path / "b", 12, 4, cfg, seed=3)
    write_synth_dataset(tmp_path / "c", 12, 4, cfg, seed=4)
    assert _digest(photo_dir) == _digest(tmp_path / "b")
    assert _digest(photo_dir) != _digest(tmp_path / "c")
    write_synth_dataset(tmp_path / "d", 6, 0, cfg, seed=3)
    assert (photo_dir / "images/train_000005.jpg").read_bytes() == \
        (tmp_path / "d/images/train_000005.jpg").read_bytes()
    a, b = render_scene(3, 0, 5, cfg), render_scene(3, 0, 5, cfg)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.seg.ids, b.seg.ids)
    assert a.things == b.things
    # the default style's image of the same (seed, split, index) shares no random draws
    assert not np.array_equal(render_image(3, 0, 5, SynthConfig(height=96, width=128))[0],
                              a.image)


def test_files_pass_the_readers_and_tags_match_the_pngs(photo_dir):
    cats = {c["id"]: c for c in photo_categories()}
    for split in ("train", "val"):
        js = photo_dir / "annotations" / f"panoptic_{split}.json"
        ds = load_panoptic_json(js)
        assert ds.categories.names == [*PHOTO_THINGS, *PHOTO_STUFF]
        gt = load_panoptic_gt(js)  # the evaluation's reader
        assert len(gt.images) == len(ds)
        labels = {im.id: set(im.labels) for im in read_image_labels(js).images}
        for im in ds.images:
            seg = ds.read(im["id"])  # checks the PNG's ids are the json's segments
            present = set(np.unique(seg.ids).tolist()) - {0}
            assert present == {s["id"] for s in seg.segments}
            for s in seg.segments:
                m = seg.ids == s["id"]
                assert s["area"] == int(m.sum()) > 0
                ys, xs = np.nonzero(m)
                assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                     ys.max() - ys.min() + 1]
            # every tag of the image is a class painted in its PNG under that class's id
            in_png = {s["category_id"] for s in seg.segments if (seg.ids == s["id"]).any()}
            assert labels[im["id"]] == in_png
            stuff = [s["category_id"] for s in seg.segments
                     if not cats[s["category_id"]]["isthing"]]
            assert len(stuff) == len(set(stuff)) >= 1  # one segment per stuff class
            img = read_image(photo_dir / "images" / im["file_name"])
            assert img.shape == (im["height"], im["width"], 3) == (96, 128, 3)


def test_every_class_occurs_and_one_class_often_has_several_instances():
    cfg = PhotoConfig(height=96, width=96)
    seen, multi, n = set(), 0, 40
    for i in range(n):
        _, seg = render_photo(1, 0, i, cfg)
        seen |= {s["category_id"] for s in seg.segments}
        things = [s["category_id"] for s in seg.segments if s["category_id"] <= len(PHOTO_THINGS)]
        assert things, i
        multi += len(things) > len(set(things))
    assert seen == {c["id"] for c in photo_categories(cfg)}
    assert multi >= n // 4


def test_things_occlude_each_other_but_keep_half_their_pixels():
    cfg = PhotoConfig(height=96, width=96)
    occluded = 0
    for i in range(30):
        scene = render_scene(2, 0, i, cfg)
        for t in scene.things:
            if t.segment_id:
                visible = int((scene.seg.ids == t.segment_id).sum())
                assert 0.5 * t.area <= visible <= t.area
                occluded += visible < t.area
    assert occluded >= 5


def _mean_colour(img, mask):
    return img[mask].astype(np.float64).mean(0)


def test_camouflaged_things_share_the_colours_of_their_stuff_region():
    """A camouflaged thing's mean colour is nearest the stuff region whose texture it took,
    and far nearer than a default-style thing is to any stuff region of its image."""
    cfg = PhotoConfig(height=96, width=96)
    nearest_is_source, dist = [], []
    for i in range(40):
        scene = render_scene(4, 0, i, cfg)
        stuff = {s["category_id"]: scene.seg.ids == s["id"] for s in scene.seg.segments
                 if s["category_id"] > len(cfg.things)}
        for t in scene.things:
            if t.material != "camouflage" or not t.segment_id or \
                    t.source_category_id not in stuff:
                continue
            mu = _mean_colour(scene.image, scene.seg.ids == t.segment_id)
            d = {c: np.linalg.norm(_mean_colour(scene.image, m) - mu) for c, m in stuff.items()}
            nearest_is_source.append(min(d, key=d.get) == t.source_category_id)
            dist.append(d[t.source_category_id])
    assert len(dist) >= 20
    assert np.mean(nearest_is_source) >= 0.8
    default = []
    for i in range(40):
        img, seg = render_image(4, 0, i, SynthConfig(height=96, width=96))
        regions = [seg.ids == s["id"] for s in seg.segments if s["category_id"] > 5]
        for s in seg.segments:
            if s["category_id"] <= 5:
                mu = _mean_colour(img, seg.ids == s["id"])
                default.append(min(np.linalg.norm(_mean_colour(img, m) - mu) for m in regions))
    assert np.median(dist) < 0.35 * np.median(default)


def _has_thin_part(mask, min_pixels=8):
    """Whether ``mask`` has a part at most 3 px wide: pixels more than 4 px away from every
    place a 4 x 4 square fits in (the erosion), forming a blob of ``min_pixels`` or more."""
    m = mask.astype(np.uint8)
    core = cv2.erode(m, np.ones((4, 4), np.uint8))
    near = cv2.dilate(core, np.ones((8, 8), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(m & (1 - near), connectivity=8)
    return bool((stats[1:, cv2.CC_STAT_AREA] >= min_pixels).any()) if n > 1 else False


def test_the_thin_part_check_itself():
    m = np.zeros((64, 64), np.uint8)
    cv2.circle(m, (30, 30), 14, 1, -1)
    m[5:15, 5:25] = 1
    wide = m.copy()
    wide[44:62, 28:33] = 1  # a 5 px leg
    assert not _has_thin_part(m) and not _has_thin_part(wide)  # thick parts, staircase edges
    yy, xx = np.mgrid[0:64, 0:64]
    leg = np.abs((xx - 30) - (yy - 44) * 0.5) * np.cos(np.arctan(0.5)) <= 1.5  # 3 px across
    m[(yy >= 40) & (yy < 62) & leg] = 1
    assert _has_thin_part(m)


def test_articulated_classes_have_thin_parts():
    """Legs, posts, rims and frame tubes: most instances of those classes have a part at most
    3 px wide at 128 px, where the default style's shapes seldom do."""
    cfg = PhotoConfig(height=128, width=128)
    thin = {n: [] for n in PHOTO_THINGS}
    for i in range(30):
        _, seg = render_photo(5, 0, i, cfg)
        for s in seg.segments:
            if s["category_id"] <= len(PHOTO_THINGS):
                thin[PHOTO_THINGS[s["category_id"] - 1]].append(
                    _has_thin_part(seg.ids == s["id"]))
    for name in ("quadruped", "chair", "lamp", "bicycle"):
        assert len(thin[name]) >= 8 and np.mean(thin[name]) >= 0.4, (name, thin[name])
    default = []
    for i in range(30):
        _, seg = render_image(5, 0, i, SynthConfig())
        default += [_has_thin_part(seg.ids == s["id"]) for s in seg.segments
                    if s["category_id"] <= 5]
    assert np.mean(default) < 0.2


def test_clutter_is_labelled_as_the_stuff_it_lies_on():
    """Clutter changes pixels, never the ground truth: with and without it the segments are
    the same."""
    with_clutter, without = PhotoConfig(height=96, width=96), \
        PhotoConfig(height=96, width=96, clutter=0)
    changed = 0
    for i in range(6):
        a, b = render_scene(6, 0, i, with_clutter), render_scene(6, 0, i, without)
        assert np.array_equal(a.seg.ids, b.seg.ids) and a.seg.segments == b.seg.segments
        changed += int((np.abs(a.image.astype(int) - b.image.astype(int)) > 40).any())
    assert changed >= 5


def test_default_style_is_unchanged():
    """The default style's images and segments (before any style existed: digest recorded
    then) and the CLI's default output equal ``--style default`` and the library's."""
    h = hashlib.sha256()
    for cfg in (SynthConfig(), SynthConfig(height=64, width=80)):
        for i in range(6):
            img, seg = render_image(0, i % 2, i, cfg)
            h.update(img.tobytes())
            h.update(seg.ids.astype(np.int64).tobytes())
            h.update(json.dumps(seg.segments, sort_keys=True, default=int).encode())
    assert h.hexdigest() == "ef4d9937fc6eaf00d27b92f07ec6181c908501c5382c2232dff65c76d772fe88"
    assert categories(SynthConfig()) == categories()


def test_cli_styles(tmp_path):
    runner = CliRunner()
    base = ["data", "synth", "--train", "2", "--val", "1", "--size", "48", "64", "--seed", "2",
            "-q"]
    for name, extra in (("plain", []), ("default", ["--style", "default"]),
                        ("photo", ["--style", "photo"])):
        r = runner.invoke(cli, [*base[:2], str(tmp_path / name), *base[2:], *extra])
        assert r.exit_code == 0, r.output
    write_synth_dataset(tmp_path / "lib", 2, 1, SynthConfig(height=48, width=64), seed=2)
    assert _digest(tmp_path / "plain") == _digest(tmp_path / "default") == \
        _digest(tmp_path / "lib")
    cats = json.loads((tmp_path / "photo/annotations/panoptic_train.json").read_text())
    assert [c["name"] for c in cats["categories"]] == [*PHOTO_THINGS, *PHOTO_STUFF]
    r = runner.invoke(cli, [*base[:2], str(tmp_path / "sub"), *base[2:], "--style", "photo",
                            "--things", "lamp,bottle", "--stuff", "road,wall"])
    assert r.exit_code == 0, r.output
    cats = json.loads((tmp_path / "sub/annotations/panoptic_train.json").read_text())
    assert [(c["name"], c["isthing"]) for c in cats["categories"]] == [
        ("lamp", 1), ("bottle", 1), ("road", 0), ("wall", 0)]
    r = runner.invoke(cli, [*base[:2], str(tmp_path / "bad"), *base[2:], "--style", "photo",
                            "--things", "disc"])
    assert r.exit_code == 2 and "unknown thing class 'disc' of the photo style" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "bad").exists()


def test_help_lists_the_photo_classes():
    import re

    r = CliRunner().invoke(cli, ["data", "synth", "--help"], terminal_width=400)
    words = set(re.findall(r"[a-z]+", r.output))
    for name in (*PHOTO_THINGS, *PHOTO_STUFF):
        assert name in words, name


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown stuff class 'stripes' of the photo style"):
        PhotoConfig(stuff=("stripes", "sky"))
    with pytest.raises(ValueError, match="2\\+ distinct"):
        PhotoConfig(stuff=("sky", "sky"))
    with pytest.raises(ValueError, match="probabilities"):
        PhotoConfig(camouflage=0.8, silhouette=0.4)
