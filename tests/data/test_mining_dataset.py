import json

import numpy as np
import pytest
import torch

from jtsm.config import InputConfig
from jtsm.data.coco_panoptic import load_panoptic_json
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import MiningDataset, TagBatchDataset, hsv_jitter, resize_to_scale
from jtsm.errors import DataError
from jtsm.fileio import read_image


def _ds(synth_dir, synth_proposals, **kw):
    labels = read_image_labels(synth_dir / "annotations/panoptic_train.json")
    return MiningDataset(labels, synth_dir / "images", synth_proposals, InputConfig(**kw))


def test_items_are_consistent(synth_dir, synth_proposals):
    ds = _ds(synth_dir, synth_proposals, train_scales=[64, 80], max_proposals=50)
    gt = load_panoptic_json(synth_dir / "annotations/panoptic_train.json")
    for i in range(4):
        item = ds.load(i, np.random.default_rng(i))
        _, h, w = item.image.shape
        assert min(h, w) in (64, 80)
        assert item.proposals.image_size == (h, w)
        assert 0 < len(item.proposals) <= 50
        expect = ds.categories.tag_vector(gt.labels(item.image_id))
        assert item.tags.numpy().tolist() == expect.tolist()
        assert 0 <= float(item.image.min()) and float(item.image.max()) <= 255


def test_flip_moves_image_and_proposals_together(synth_dir, synth_proposals):
    ds = _ds(synth_dir, synth_proposals, train_scales=[96], hsv_jitter=1.0)
    image, ps = ds.read(0)
    top = ps.topk(5)
    for seed in range(10):
        item = ds.load(0, np.random.default_rng(seed))
        m = item.proposals.topk(5).masks()
        if np.array_equal(m, top.masks()):
            continue
        assert np.array_equal(m, top.masks()[:, :, ::-1])
        x = item.image.numpy()
        # the flipped tensor's first column is the original image's last column
        orig = read_image(synth_dir / "images" / ds.records[0].file_name).astype(np.float32)
        np.testing.assert_array_equal(x[:, :, 0], orig[:, -1].T)
        return
    pytest.fail("no flipped sample in 10 seeds")


def test_untagged_images_are_skipped_with_a_count(synth_dir, synth_proposals, tmp_path):
    d = json.loads((synth_dir / "annotations/panoptic_train.json").read_text())
    d["annotations"][0]["segments_info"] = []
    p = tmp_path / "p.json"
    p.write_text(json.dumps(d))
    ds = MiningDataset(read_image_labels(p), synth_dir / "images", synth_proposals,
                       InputConfig())
    assert ds.skipped_untagged == 1 and len(ds) == len(d["images"]) - 1


def test_the_cache_serves_the_same_items_within_its_budget(synth_dir, synth_proposals):
    cached, plain = _ds(synth_dir, synth_proposals), _ds(synth_dir, synth_proposals, cache_mb=0)
    for i in (0, 1, 0, 2, 1):  # repeats come from the cache
        a, b = cached.load(i, np.random.default_rng(i)), plain.load(i, np.random.default_rng(i))
        assert torch.equal(a.image, b.image) and torch.equal(a.tags, b.tags)
        assert np.array_equal(a.proposals.superpixels, b.proposals.superpixels)
        assert (a.proposals.membership != b.proposals.membership).nnz == 0
        assert np.array_equal(a.proposals.boxes, b.proposals.boxes)
    image, ps = cached.read(0)
    assert cached.read(0)[0] is image and cached.read(0)[1] is ps
    assert not image.flags.writeable and not ps.superpixels.flags.writeable
    assert plain.read(0)[0] is not plain.read(0)[0] and plain._cached_bytes == 0
    for i in range(len(cached)):
        cached.read(i)
    total = cached._cached_bytes  # everything: far under the default 1024 MB
    assert len(cached._images) == len(cached._proposals) == len(cached)
    small = _ds(synth_dir, synth_proposals, cache_mb=total / 2 / 2**20)
    for i in range(len(small)):
        small.read(i)
    assert 0 < small._cached_bytes <= total / 2
    assert 0 < len(small._proposals) < len(small)


def test_proposals_of_another_size_are_refused(synth_dir, synth_proposals, tmp_path):
    from jtsm.proposals.store import ProposalStore

    ds = _ds(synth_dir, synth_proposals)
    image, ps = ds.read(0)
    store = ProposalStore(tmp_path)
    store.save(ds.records[0].file_name, ps.resize(20, 30))
    fresh = _ds(synth_dir, synth_proposals)  # ds holds image 0's proposals in its cache now
    fresh.store = store
    with pytest.raises(DataError, match="proposals are for a 30x20 image"):
        fresh.read(0)


def test_tag_batches(synth_dir, synth_proposals):
    ds = _ds(synth_dir, synth_proposals, train_scales=[48, 64, 80])
    images, tags = TagBatchDataset(ds, 5).load(2, np.random.default_rng(0))
    # the 96x112 images at short side 64, the middle training scale, aspect kept
    assert images.shape == (5, 3, 64, 75) and tags.shape == (5, ds.categories.num_classes)
    assert (tags.sum(1) >= 1).all()


def test_tag_batches_keep_the_aspect_and_reflect_pad(tmp_path):
    """Warm-up images are resized as MIL's (short side S, aspect kept), never squashed; a
    smaller image of the batch is mirrored out to the largest."""
    from jtsm.data.mining_dataset import _reflect_pad

    img = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    out = _reflect_pad(img, 8, 9)  # more than twice the height: mirrored twice
    assert out.shape == (8, 9, 3)
    assert np.array_equal(out[:3, :4], img)
    assert np.array_equal(out[3, :4], img[1]) and np.array_equal(out[4, :4], img[0])
    assert np.array_equal(out[:3, 4], img[:, 2])
    assert _reflect_pad(img, 3, 4) is img




def test_scale_and_jitter_helpers():
    assert resize_to_scale(100, 200, 50, 1000) == (50, 100)
    assert resize_to_scale(100, 400, 50, 150) == (38, 150)
    img = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(hsv_jitter(img, 1.0, np.random.default_rng(0)), img)
    out = hsv_jitter(img, 1.5, np.random.default_rng(0))
    assert out.shape == img.shape and not np.array_equal(out, img)



def test_hsv_jitter_equals_the_per_pixel_float_formula():
    """The 256-level table gives exactly ``uint8(clip(float32(v) * f, 0, 255))`` per pixel."""
    import cv2

    img = np.random.default_rng(1).integers(0, 256, (37, 23, 3), dtype=np.uint8)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        for ch in (1, 2):
            f = float(np.exp(rng.uniform(-np.log(1.5), np.log(1.5))))
            hsv[..., ch] = np.clip(hsv[..., ch] * f, 0, 255)
        slow = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        assert np.array_equal(hsv_jitter(img, 1.5, np.random.default_rng(seed)), slow)


def test_the_area_floor_measures_the_mask():
    """``input.min_proposal_area``: a hollow square (its mask 14% of the image, its box 56%)
    under a 15% floor is dropped, a solid square of 25% kept; without a floor everything
    stays, best score first up to ``max_proposals``."""
    from jtsm.config import InputConfig
    from jtsm.data.mining_dataset import select_proposals
    from jtsm.structures import ProposalSet

    h = w = 40
    ring = np.zeros((h, w), bool)
    ring[5:35, 5:35] = True
    ring[7:33, 7:33] = False  # 30x30 box (56% of the image), 224 px of mask (14%)
    blob = np.zeros((h, w), bool)
    blob[0:8, 30:38] = True  # 64 px: 4%
    solid = np.zeros((h, w), bool)
    solid[10:30, 10:30] = True  # 25%
    masks = np.stack([ring, blob, solid])
    ps = ProposalSet.from_masks(masks, scores=np.array([0.9, 0.8, 0.7]))

    def kept(**kw):
        out = select_proposals(ps, InputConfig(**{"max_proposals": 10, **kw}))
        return sorted(int(np.flatnonzero((masks == out.mask(i)).all(axis=(1, 2)))[0])
                      for i in range(len(out)))

    assert kept(min_proposal_area=0.0) == [0, 1, 2]
    assert kept(min_proposal_area=0.05) == [0, 2]
    assert kept(min_proposal_area=0.15) == [2]
    assert kept(min_proposal_area=0.0, max_proposals=2) == [0, 1]


def test_hflip_is_numpy_reversed_columns():
    from jtsm.data.mining_dataset import hflip

    rng = np.random.default_rng(2)
    for h, w in ((1, 1), (5, 2), (37, 23), (96, 131)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img.setflags(write=False)  # as a cached image is
        out = hflip(img)
        assert out.flags.c_contiguous and np.array_equal(out, img[:, ::-1])


def test_items_carry_their_proposal_tensors_unpinned_on_a_cpu(synth_dir, synth_proposals,
                                                              monkeypatch):
    """The loader builds the proposals' tensors; for a CPU model nothing is pinned (that
    needs CUDA)."""
    from jtsm.ops.proposal_tensors import ProposalTensors

    def refuse(self, *a, **k):
        raise AssertionError("pin_memory called for a CPU model")

    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)
    ds = _ds(synth_dir, synth_proposals, train_scales=[64, 80], max_proposals=50)
    assert ds.model_device == torch.device("cpu")
    item = ds.load(3, np.random.default_rng(3))
    ref = ProposalTensors.from_proposal_set(item.proposals)
    pt = item.tensors()
    assert pt is item.proposal_tensors
    for name in ("superpixels", "crow", "col", "boxes", "scores"):
        assert torch.equal(getattr(pt, name), getattr(ref, name)), name
    assert item.pinned("cpu") is item
    images, tags = TagBatchDataset(ds, 2).load(0, np.random.default_rng(0))
    assert images.shape[0] == 2 and tags.shape[0] == 2


def test_items_for_a_gpu_model_are_pinned_on_the_loader_side(synth_dir, synth_proposals,
                                                             monkeypatch):
    """With ``model_device`` a GPU every tensor of an item is pinned (mocked here: recorded),
    the values unchanged; the tag warm-up's batches too."""
    pinned = []

    def fake_pin(self):
        out = self.clone()
        pinned.append(out)
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: any(self is p for p in pinned))
    ds = _ds(synth_dir, synth_proposals, train_scales=[64], max_proposals=50)
    plain = ds.load(1, np.random.default_rng(5))
    ds.model_device = torch.device("cuda", 0)
    item = ds.load(1, np.random.default_rng(5))
    tensors = [item.image, item.tags] + [getattr(item.proposal_tensors, n) for n in (
        "superpixels", "crow", "col", "boxes", "scores", "sp_areas")]
    assert all(any(t is p for p in pinned) for t in tensors)
    assert torch.equal(item.image, plain.image) and torch.equal(item.tags, plain.tags)
    assert torch.equal(item.proposal_tensors.col, plain.tensors().col)
    n = len(pinned)
    images, tags = TagBatchDataset(ds, 2).load(0, np.random.default_rng(0))
    assert len(pinned) == n + 2 and images is pinned[-2] and tags is pinned[-1]
