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
