import numpy as np
import pytest
import scipy.sparse as sp
from pycocotools import mask as mask_utils

from jtsm.structures import CategoryMap, PanopticSeg, ProposalSet, masks_to_boxes


def _random_masks(rng, p=7, h=23, w=31):
    masks = np.zeros((p, h, w), bool)
    for i in range(p):
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > 0.3
    return masks


@pytest.mark.parametrize("seed", range(5))
def test_masks_roundtrip_exact(seed):
    rng = np.random.default_rng(seed)
    masks = _random_masks(rng)
    ps = ProposalSet.from_masks(masks, rng.random(len(masks)))
    assert np.array_equal(ps.masks(), masks)
    for i in range(len(masks)):
        assert np.array_equal(ps.mask(i), masks[i])
    # a proposal's mask is the union of its superpixels
    for i in range(len(ps)):
        members = ps.membership[i].indices
        assert np.array_equal(np.isin(ps.superpixels, members), masks[i])
    assert np.array_equal(ps.areas(), masks.sum(axis=(1, 2)))
    assert np.array_equal(ps.boxes, masks_to_boxes(masks))


def test_boxes_exclusive_and_match_coco():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    box = masks_to_boxes(m[None])[0]
    assert box.tolist() == [3, 2, 9, 5]
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    x, y, w, h = mask_utils.toBbox(rle)
    assert [x, y, x + w, y + h] == box.tolist()


def test_mask_iou_matches_dense():
    rng = np.random.default_rng(1)
    masks = _random_masks(rng, p=9)
    ps = ProposalSet.from_masks(masks)
    inter = (masks[:, None] & masks[None]).sum((2, 3))
    union = (masks[:, None] | masks[None]).sum((2, 3))
    expect = np.where(union > 0, inter / np.maximum(union, 1), 0)
    np.testing.assert_allclose(ps.mask_iou(), expect, rtol=0, atol=1e-12)


def test_clean_dedup_topk_and_empty():
    m = np.zeros((4, 8, 8), bool)
    m[0, :4] = True
    m[1, :4] = True  # duplicate of 0 with a higher score
    m[3, 4:, 4:] = True  # 2 is empty
    ps = ProposalSet.from_masks(m, np.array([0.1, 0.9, 0.5, 0.3]))
    cleaned = ps.clean()
    assert len(cleaned) == 2
    assert cleaned.scores.tolist() == pytest.approx([0.9, 0.3])
    assert np.array_equal(cleaned.masks(), m[[1, 3]])
    assert ps.topk(2).scores.tolist() == pytest.approx([0.9, 0.5])


def test_hflip_and_resize_follow_the_image():
    rng = np.random.default_rng(2)
    masks = _random_masks(rng)
    ps = ProposalSet.from_masks(masks)
    flipped = ps.hflip()
    assert np.array_equal(flipped.masks(), masks[:, :, ::-1])
    assert np.array_equal(flipped.boxes, masks_to_boxes(masks[:, :, ::-1]))
    big = ps.resize(46, 62)
    assert np.array_equal(big.masks(), masks.repeat(2, 1).repeat(2, 2))


def test_compact_drops_unused_ids():
    spm = np.array([[0, 0, 5], [5, 5, 0]])
    ps = ProposalSet(spm, sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]])))
    c = ps.compact()
    assert c.num_superpixels == 2
    assert np.array_equal(c.masks(), ps.masks())


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ProposalSet(np.zeros((2, 2), int) + 3, sp.csr_matrix((1, 2), dtype=bool))
    with pytest.raises(ValueError):
        ProposalSet(np.zeros((2, 2), int), sp.csr_matrix((2, 1), dtype=bool), np.zeros(3))


def test_coco_rle_export_decodes_to_masks():
    rng = np.random.default_rng(3)
    masks = _random_masks(rng, p=3)
    ps = ProposalSet.from_masks(masks, [0.3, 0.2, 0.1])
    recs = ps.to_coco_rle(image_id=7)
    for rec, m in zip(recs, masks):
        rle = dict(rec["segmentation"], counts=rec["segmentation"]["counts"].encode())
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m)
        assert rec["image_id"] == 7


def test_category_map_orders_things_first():
    cm = CategoryMap.from_coco([
        {"id": 10, "name": "sky", "isthing": 0},
        {"id": 3, "name": "dog", "isthing": 1},
        {"id": 5, "name": "cat"},  # no isthing: a thing (COCO instances)
    ])
    assert cm.names == ["dog", "cat", "sky"]
    assert (cm.num_things, cm.num_stuff) == (2, 1)
    assert cm.index(10) == 2 and cm.isthing(5) and not cm.isthing(10)
    assert cm.tag_vector([10, 3]).tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        CategoryMap.from_coco([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])


def test_panoptic_semantic_and_stats():
    ids = np.array([[0, 4, 4], [9, 9, 4]])
    seg = PanopticSeg(ids, [{"id": 4, "category_id": 1}, {"id": 9, "category_id": 2},
                            {"id": 11, "category_id": 1}]).with_stats()
    assert [s["id"] for s in seg.segments] == [4, 9]  # empty segment dropped
    assert seg.segments[0]["area"] == 3 and seg.segments[0]["bbox"] == [1, 0, 2, 2]
    cm = CategoryMap.from_coco([{"id": 1, "name": "a", "isthing": 1},
                                {"id": 2, "name": "b", "isthing": 0}])
    assert seg.semantic(cm).tolist() == [[255, 0, 0], [1, 1, 0]]
