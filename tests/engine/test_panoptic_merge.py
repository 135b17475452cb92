import numpy as np

from jtsm.engine.panoptic_merge import MergeConfig, merge_panoptic


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_score_order_overlap_and_threshold():
    h, w = 20, 20
    a = _box(h, w, 0, 10, 0, 10)     # score 0.9
    b = _box(h, w, 5, 15, 5, 15)     # 0.8, 25% covered by a -> free part pasted
    c = _box(h, w, 0, 10, 0, 8)      # 0.7, fully covered by a -> skipped
    d = _box(h, w, 15, 20, 15, 20)   # 0.3 < threshold -> dropped
    seg = merge_panoptic([b, a, c, d], [2, 1, 3, 4], [0.8, 0.9, 0.7, 0.3], [], [],
                         cfg=MergeConfig(score_threshold=0.5, stuff_area=1))
    cats = [s["category_id"] for s in seg.segments]
    assert cats == [1, 2]
    assert np.array_equal(seg.ids == 1, a)
    assert np.array_equal(seg.ids == 2, b & ~a)
    assert (seg.ids[15:, 15:] == 0).all()


def test_stuff_fills_rest_one_segment_per_class_and_area_threshold():
    h, w = 20, 20
    thing = _box(h, w, 0, 10, 0, 10)
    sky1 = _box(h, w, 0, 10, 0, 20)
    sky2 = _box(h, w, 18, 20, 0, 20)     # same class, second region
    grass = _box(h, w, 10, 18, 0, 20)
    tiny = _box(h, w, 19, 20, 19, 20)    # another class, 1 px < area threshold
    seg = merge_panoptic([thing], [1], [0.95], [sky1, grass, sky2, tiny], [7, 8, 7, 9],
                         cfg=MergeConfig(stuff_area=5))
    by_cat = {s["category_id"]: s for s in seg.segments}
    assert set(by_cat) == {1, 7, 8}
    assert np.array_equal(seg.ids == by_cat[7]["id"], (sky1 & ~thing) | (sky2 & ~grass))
    assert np.array_equal(seg.ids == by_cat[8]["id"], grass)
    assert by_cat[7]["area"] == int(((sky1 & ~thing) | sky2).sum())


def test_the_defaults_are_the_stages_own():
    """Every stage merges with the defaults and its ``segments.stuff_area``; a default config's
    ``stuff_area`` is the default's."""
    from jtsm.config import load_config

    assert MergeConfig() == MergeConfig(0.0, 0.5, load_config().segments.stuff_area)


def test_stuff_scores_decide_overlaps_and_empty_input():
    h, w = 6, 6
    a = _box(h, w, 0, 6, 0, 4)
    b = _box(h, w, 0, 6, 2, 6)
    seg = merge_panoptic([], [], [], [a, b], [7, 8], [0.2, 0.9], MergeConfig(stuff_area=1))
    assert (seg.ids[:, 2:] == [s["id"] for s in seg.segments if s["category_id"] == 8][0]).all()
    empty = merge_panoptic([], [], [], [], [], image_size=(3, 4))
    assert empty.ids.shape == (3, 4) and empty.segments == []
