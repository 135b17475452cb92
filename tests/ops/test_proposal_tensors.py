"""ProposalSet <-> tensors, mask IoU from the membership matrix, DataLoader collation."""

from __future__ import annotations

import numpy as np
import torch
from ops_helpers import random_proposals

from jtsm.ops.proposal_tensors import ProposalTensors, collate_proposals
from jtsm.structures import ProposalSet


def _set() -> ProposalSet:
    rng = np.random.default_rng(0)
    masks = rng.random((6, 20, 24)) < 0.05
    masks[:, 5:15, 4:12] |= rng.random((6, 1, 1)) < 0.5
    masks[0] = False
    masks[0, 2:9, 3:20] = True
    return ProposalSet.from_masks(masks, scores=rng.random(6))


def test_roundtrip_masks_boxes_scores_areas():
    ps = _set()
    pt = ProposalTensors.from_proposal_set(ps)
    assert len(pt) == len(ps) and pt.image_size == ps.image_size
    assert np.array_equal(pt.masks().numpy(), ps.masks())
    assert np.array_equal(pt.boxes.numpy(), ps.boxes)
    assert np.array_equal(pt.areas().numpy(), ps.areas())
    assert torch.equal(ProposalTensors.from_dict(pt.as_dict()).col, pt.col)


def test_mask_iou_matches_structures():
    ps = _set()
    pt = ProposalTensors.from_proposal_set(ps)
    idx = torch.tensor([3, 0, 5])
    np.testing.assert_allclose(pt.mask_iou(idx).numpy(), ps.mask_iou()[:, [3, 0, 5]], atol=1e-12)


def test_members_slice():
    pt = random_proposals(20, 20, n_sp=10, n_prop=5, seed=0)
    owner, sp = pt.members(2, 4)
    masks = pt.masks([2, 3])
    for o in (0, 1):
        ids = set(sp[owner == o].tolist())
        assert ids == set(pt.superpixels[masks[o]].unique().tolist())


def test_dataloader_collation_keeps_variable_counts():
    items = [random_proposals(16, 16, 6, n, seed=n) for n in (3, 7)]

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return items[i]

    loader = torch.utils.data.DataLoader(DS(), batch_size=2, collate_fn=collate_proposals)
    (batch,) = list(loader)
    assert [len(b) for b in batch] == [3, 7]


def _loop_mask_iou(pt: ProposalTensors, index: torch.Tensor) -> torch.Tensor:
    """The per-index loop mask_iou used to be (one host read per selected proposal)."""
    sp_area = torch.bincount(pt.superpixels.reshape(-1), minlength=pt.num_superpixels).double()
    sel = torch.zeros(index.numel(), pt.num_superpixels, dtype=torch.float64)
    for j, i in enumerate(index.tolist()):
        sel[j, pt.col[int(pt.crow[i]):int(pt.crow[i + 1])]] = 1.0
    owner, sp = pt.members()
    inter = torch.zeros(len(pt), index.numel(), dtype=torch.float64)
    inter.index_add_(0, owner, sp_area[sp, None] * sel[:, sp].T)
    area = torch.zeros(len(pt), dtype=torch.float64).index_add_(0, owner, sp_area[sp])
    union = area[:, None] + area[index][None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def test_mask_iou_is_the_per_index_loop_bit_for_bit_without_host_reads():
    from jtsm.ops.sync_counter import HostSyncCounter

    pt = random_proposals(40, 50, n_sp=30, n_prop=60, seed=3)
    for idx in (torch.tensor([7, 0, 59, 7]), torch.tensor([], dtype=torch.int64),
                torch.arange(60)):
        ref = _loop_mask_iou(pt, idx)
        with HostSyncCounter() as c:
            got = pt.mask_iou(idx)
        assert torch.equal(got, ref)
        assert c.count == 0, c.summary()  # (the areas' bincount on the CPU is host work)


def test_superpixel_areas_are_kept_and_travel_with_the_tensors(monkeypatch):
    pt = random_proposals(20, 24, n_sp=12, n_prop=9, seed=2)
    assert pt.sp_areas is None
    areas = pt.superpixel_areas()
    assert np.array_equal(areas.numpy(), np.bincount(pt.superpixels.numpy().ravel(),
                                                     minlength=12))
    assert pt.superpixel_areas() is areas
    assert pt.to("cpu") is pt and pt.pinned("cpu") is pt  # nothing to do on a CPU

    pinned = []

    def fake_pin(self):
        pinned.append(self)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: False)
    fresh = random_proposals(20, 24, n_sp=12, n_prop=9, seed=2)
    p = fresh.pinned("cuda")  # areas computed on the host first, then every tensor pinned
    assert len(pinned) == 6 and p.sp_areas is not None and p is not fresh
    for name in ("superpixels", "crow", "col", "boxes", "scores", "sp_areas"):
        assert torch.equal(getattr(p, name), getattr(fresh, name))
        assert any(getattr(fresh, name) is t for t in pinned), name
