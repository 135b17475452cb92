"""MoIPool on a GPU with host-planned proposals (kept apart from the hypothesis-based tests
of test_moi_pool.py, so that a GPU node without hypothesis still runs it)."""

from __future__ import annotations

import pytest
import torch
from ops_helpers import random_proposals

from jtsm.ops.moi_pool import moi_pool


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_host_planned_pooling_equals_the_device_plan_without_syncs():
    """On a GPU, host proposals give the same output and gradient as proposals moved to the
    device first, and (with the Triton kernel) not one host synchronisation per image."""
    import warnings

    from jtsm.ops.binned_max_triton import available as triton_available

    props = random_proposals(90, 120, n_sp=60, n_prop=400, seed=6)
    feat = torch.randn(1, 16, 12, 15, device="cuda")
    outs = []
    for p in (props, props.to("cuda")):
        f = feat.clone().requires_grad_()
        out = moi_pool(f, p, 7, 1 / 8)
        out.backward(torch.ones_like(out))
        outs.append((out.detach(), f.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-6)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            f = feat.clone().requires_grad_()
            moi_pool(f, props, 7, 1 / 8).sum().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    assert syncs == (0 if triton_available() else 1), [str(w.message) for w in caught]
