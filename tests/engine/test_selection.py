import numpy as np

from jtsm.engine.selection import SegmentsConfig, box_nms, detections, mine_image, present_classes
from jtsm.structures import CategoryMap, ProposalSet

CATS = CategoryMap.from_coco([{"id": 3, "name": "dog", "isthing": 1},
                              {"id": 4, "name": "cat", "isthing": 1},
                              {"id": 9, "name": "grass", "isthing": 0}])


def _box(y0, y1, x0, x1, h=20, w=30):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_things_top_plus_confident_non_overlapping_and_stuff_union():
    masks = np.stack([
        _box(0, 8, 0, 8),      # 0 dog, top
        _box(0, 8, 1, 9),      # 1 dog, overlaps 0 -> duplicate
        _box(10, 18, 0, 8),    # 2 dog, second instance (score 0.6 >= 0.5 * 0.9)
        _box(10, 18, 10, 18),  # 3 dog, too weak (0.3 < 0.45)
        _box(0, 8, 20, 28),    # 4 cat
        _box(0, 20, 18, 30),   # 5 grass part A
        _box(18, 20, 0, 18),   # 6 grass part B (separate component)
    ])
    ps = ProposalSet.from_masks(masks)
    scores = np.zeros((7, 3), np.float32)
    scores[:, 0] = [0.9, 0.85, 0.6, 0.3, 0.0, 0.0, 0.0]
    scores[:, 1] = [0.1, 0.0, 0.0, 0.0, 0.8, 0.1, 0.0]
    scores[:, 2] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.5]
    seg = mine_image(ps, scores, [0, 1, 2], CATS, SegmentsConfig(stuff_area=1))
    by = {}
    for s in seg.segments:
        by.setdefault(s["category_id"], []).append(s)
    assert len(by[3]) == 2 and len(by[4]) == 1 and len(by[9]) == 1
    dog_masks = sorted((seg.ids == s["id"]).sum() for s in by[3])
    assert dog_masks == [64, 64]
    assert np.array_equal(seg.ids == by[3][0]["id"], masks[0])
    cat = seg.ids == by[4][0]["id"]
    grass = seg.ids == by[9][0]["id"]
    assert np.array_equal(cat, masks[4])
    assert np.array_equal(grass, (masks[5] | masks[6]) & ~masks[4])


def test_absent_classes_are_not_mined_and_presence_from_scores():
    ps = ProposalSet.from_masks(np.stack([_box(0, 5, 0, 5), _box(5, 10, 5, 10)]))
    scores = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]], np.float32)
    seg = mine_image(ps, scores, [1], CATS)
    assert [s["category_id"] for s in seg.segments] == [4]
    assert present_classes(np.array([0.7, 0.2, 0.5]), None, SegmentsConfig()) == [0, 2]
    assert present_classes(np.array([0.7, 0.2, 0.5]), [1], SegmentsConfig()) == [1]


def test_box_nms_matches_slow_loop():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (60, 2))], 1)
    scores = rng.random(60)
    keep = box_nms(boxes, scores, 0.5)

    def iou(a, b):
        iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
        ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    slow = []
    for i in sorted(range(60), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[j]) <= 0.5 for j in slow):
            slow.append(i)
    assert keep.tolist() == slow


def test_detections_are_coco_results_of_things_only():
    ps = ProposalSet.from_masks(np.stack([_box(0, 5, 0, 5), _box(0, 5, 1, 5), _box(9, 19, 9, 29)]))
    scores = np.array([[0.9, 0.0, 0.5], [0.8, 0.0, 0.5], [0.1, 0.7, 0.5]], np.float32)
    dets = detections(ps, scores, CATS, image_id=5)
    assert {d["category_id"] for d in dets} <= {3, 4}
    top = dets[0]
    assert top == {"image_id": 5, "category_id": 3, "bbox": [0.0, 0.0, 5.0, 5.0], "score":
                   float(np.float32(0.9))}
    dog = [d for d in dets if d["category_id"] == 3]
    assert len(dog) == 2  # box 1 suppressed by box 0 (IoU 0.8), box 2 kept
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)


def test_calibrate_presence_maximises_f1_per_class():
    from jtsm.engine.selection import calibrate_presence

    scores = np.array([[0.9, 0.2, 0.3], [0.3, 0.25, 0.3], [0.2, 0.1, 0.3], [0.35, 0.3, 0.3]])
    tags = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 1], [0, 1, 1]])
    th = calibrate_presence(scores, tags, default=0.5)
    assert th[0] == 0.3   # {0.9, 0.3} positive; 0.35 is a false positive either way: F1 0.8
    assert th[1] == 0.2   # 0.2, 0.25, 0.3 positive, 0.1 negative: F1 1
    assert th[2] == 0.5   # always present: default kept
    assert present_classes(np.array([0.31, 0.19, 0.6]), None, SegmentsConfig(), th) == [0, 2]
