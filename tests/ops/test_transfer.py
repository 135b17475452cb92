"""Pinned, non-blocking host-to-device copies; no-ops on a CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from jtsm.ops.transfer import pinned, to_device

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def no_pinning(monkeypatch):
    """Pinning needs CUDA: any call of pin_memory fails the test."""
    def refuse(self, *a, **k):
        raise AssertionError("pin_memory called for a CPU model")
    monkeypatch.setattr(torch.Tensor, "pin_memory", refuse)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Record pin_memory and .to calls as if CUDA were there (nothing is moved)."""
    calls: list[tuple] = []

    def pin(self, *a, **k):
        calls.append(("pin_memory", self))
        out = self.clone()
        out.fake_pinned = True
        return out

    def to(self, *args, **kwargs):
        calls.append(("to", self, args, kwargs))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: getattr(self, "fake_pinned",
                                                                          False))
    monkeypatch.setattr(torch.Tensor, "to", to)
    return calls


def test_cpu_pinning_and_moving_are_no_ops(no_pinning):
    t = torch.arange(6.0)
    for dev in ("cpu", torch.device("cpu")):
        assert pinned(t, dev) is t
        assert to_device(t, dev) is t


def test_cuda_pinning_copies_to_page_locked_memory_once(fake_cuda):
    t = torch.arange(6.0)
    p = pinned(t, "cuda")
    assert fake_cuda == [("pin_memory", t)] and torch.equal(p, t) and p is not t
    assert pinned(p, "cuda:0") is p and len(fake_cuda) == 1  # already pinned: kept


def test_cuda_move_is_pinned_then_non_blocking(fake_cuda):
    t = torch.arange(6.0)
    to_device(t, "cuda:0")
    (kind, src), (kind2, moved, args, kwargs) = fake_cuda
    assert kind == "pin_memory" and src is t
    assert kind2 == "to" and moved is not t and getattr(moved, "fake_pinned", False)
    assert args == (torch.device("cuda:0"),) and kwargs == {"non_blocking": True}


@pytest.mark.cuda
@cuda
def test_cuda_pinned_copy_does_not_synchronise():
    """The real thing: a pinned copy to the GPU does not make the host wait (the sync debug
    mode set to error would raise), and the values arrive."""
    t = torch.randn(1000, 37)
    p = pinned(t, "cuda")
    assert p.is_pinned() and not t.is_pinned()
    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.cuda.set_sync_debug_mode("error")
        try:
            g = to_device(p, "cuda")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert g.is_cuda and torch.equal(g.cpu(), t)
    assert to_device(g, g.device) is g
