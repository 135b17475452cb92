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


def test_frame_pooling_sees_around_a_box_and_not_inside_it():
    """``frame_pool``: RoIAlign over the box grown 7/3 times, so that the box fills the middle
    3x3 of the 7x7 cells, and those cells zero: every other cell equals torchvision's RoIAlign
    of the grown box. Features only inside the box reach the frame only where RoIAlign's
    bilinear samples straddle the box's edge; features only around it fill the frame."""
    import torchvision

    from jtsm.modeling.pooling import frame_pool

    box = torch.tensor([[12.0, 12.0, 24.0, 24.0]])  # pixels at scale 1; grown: 4..32
    rng = torch.Generator().manual_seed(0)
    any_map = torch.rand(1, 2, 40, 40, generator=rng)
    got = frame_pool(any_map, box, 7, 1.0)
    want = torchvision.ops.roi_align(any_map, torch.tensor([[0.0, 4.0, 4.0, 32.0, 32.0]]), 7,
                                     1.0, 2, True)
    middle = torch.zeros(7, 7, dtype=torch.bool)
    middle[2:5, 2:5] = True
    assert (got[..., middle] == 0).all()
    assert torch.allclose(got[..., ~middle], want[..., ~middle])
    inside = torch.zeros(1, 2, 40, 40)
    inside[..., 12:24, 12:24] = 1.0
    assert frame_pool(inside, box, 7, 1.0).max() < 0.3  # the edge's bilinear bleed only
    around = 1.0 - inside
    assert frame_pool(around, box, 7, 1.0)[..., ~middle].min() > 0.7


def test_a_contrast_head_subtracts_the_frames_detection_logits():
    """``mining.context = "contrast"``: with the frame stream's weights at zero the head is the
    plain one; with weights, S^D drops by the frame's logits (ContextLocNet's contrastive S)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_model import _model, _scene

    torch.manual_seed(0)
    model = _model(3, "mining.fc_dim=16", "mining.context=contrast").eval()
    plain = _model(3, "mining.fc_dim=16").eval()
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("head.context_")}
    plain.load_state_dict(own)
    image, props = _scene()
    head = model.head
    assert head.context_det is not None
    with torch.no_grad():
        head.context_det.weight.zero_()
        head.context_det.bias.zero_()
        a, b = model(image, props), plain(image, props)
        assert torch.allclose(a["mil_scores"], b["mil_scores"], atol=1e-6)
        head.context_det.bias.fill_(1.0)  # the same shift for every proposal: softmax over P
        c = model(image, props)           # is unchanged
        assert torch.allclose(c["mil_scores"], b["mil_scores"], atol=1e-6)
        head.context_det.weight.normal_()
        d = model(image, props)
        assert not torch.allclose(d["mil_scores"], b["mil_scores"], atol=1e-4)
