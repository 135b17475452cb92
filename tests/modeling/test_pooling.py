"""The pooler factory: every method, empty proposal sets, empty proposals."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jtsm.modeling.pooling import POOLERS, build_pooler
from jtsm.ops.moi_pool import moi_pool
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.roi_align import roi_align
from jtsm.ops.roi_pool import roi_pool
from jtsm.ops.tps import moi_tps_pool
from jtsm.structures import ProposalSet


def _props(member: np.ndarray) -> ProposalTensors:
    spm = np.zeros((32, 32), np.int32)
    spm[16:] = 1
    return ProposalTensors.from_proposal_set(ProposalSet(spm, sp.csr_matrix(member)))


@pytest.mark.parametrize("method", POOLERS)
@pytest.mark.parametrize("member", [np.zeros((0, 2), bool), np.array([[0, 0], [1, 0]], bool)])
def test_empty_sets_and_empty_proposals(method, member):
    props = _props(member)
    feat = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = build_pooler(method, output_size=3, spatial_scale=1 / 8)(feat, props)
    assert out.shape == (len(props), 3, 3, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(feat.grad).all()


def test_factory_dispatches_to_the_op():
    props = _props(np.array([[1, 0], [1, 1]], bool))
    feat = torch.randn(1, 2, 4, 4)
    s = 1 / 8
    b = props.boxes
    cases = {
        "moi": moi_pool(feat, props, 2, s, "code"),
        "moi-tps": moi_tps_pool(feat, props, 2, s),
        "roi-pool": roi_pool(feat, b, 2, s),
        "roi-align": roi_align(feat, b, 2, s),
    }
    for method, ref in cases.items():
        assert torch.equal(build_pooler(method, output_size=2, spatial_scale=s)(feat, props), ref)
