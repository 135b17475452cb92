"""HostSyncCounter: the operations that make a GPU's host wait, counted on the CPU."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

from jtsm.ops.sync_counter import HostSyncCounter, on_host

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _x(device: str = "cpu") -> torch.Tensor:
    return torch.tensor([0.0, 3.0, 1.0, 0.0, 5.0], device=device)


# (name, op on a tensor x of the device, counted syncs): what CUDA's sync debug mode reports
SYNCING = [
    ("item", lambda x: x.sum().item(), 1),
    ("float", lambda x: float(x[1]), 1),
    ("bool", lambda x: bool((x > 4).any()), 1),
    ("int", lambda x: int(x.argmax()), 1),
    ("tolist", lambda x: x.tolist(), 1),
    ("cpu-numpy", lambda x: x.cpu().numpy(), 1),  # .numpy() itself needs a host tensor
    ("nonzero", lambda x: torch.nonzero(x), 1),
    ("where-one-arg", lambda x: torch.where(x > 0), 1),
    ("bool-index", lambda x: x[x > 0], 1),
    ("bool-index-put", lambda x: x.clone().index_put_((x > 0,), x[:3]), 1),
    ("masked_select", lambda x: torch.masked_select(x, x > 0), 1),
    ("unique", lambda x: torch.unique(x), 1),
    ("repeat_interleave", lambda x: torch.repeat_interleave(x.long()), 1),
    ("bincount", lambda x: torch.bincount(x.long()), 1),
    ("equal", lambda x: torch.equal(x, x), 1),
    ("blocking-to", lambda x: x.to("cpu") if x.is_cuda else x.to(x.device), 1),
]
# the same work without waiting: sizes known beforehand, masks instead of selections
NOT_SYNCING = [
    ("nonzero_static", lambda x: torch.nonzero_static(x, size=3)),
    ("repeat_interleave-output_size",
     lambda x: torch.repeat_interleave(x.long(), output_size=9)),
    ("repeat_interleave-int", lambda x: x.repeat_interleave(3)),
    ("masked_fill-by-index", lambda x: x.clone().__setitem__(x > 0, 0.0)),
    ("where", lambda x: torch.where(x > 0, x, 0)),
    ("dtype-to", lambda x: x.to(torch.float64)),
    ("non-blocking-to", lambda x: x.to(x.device, non_blocking=True)),
    ("reductions", lambda x: (x.max(), x.sum(), x.argmax(), (x > 0).any())),
    ("shape", lambda x: (x.shape[0], x.numel(), len(x))),
]


@pytest.mark.parametrize("name, op, n", SYNCING, ids=[s[0] for s in SYNCING])
def test_counts_every_syncing_op(name, op, n):
    x = _x()
    with HostSyncCounter() as c:
        op(x)
    assert c.count == n, c.summary()
    assert all("test_sync_counter.py:" in e.where for e in c.events), c.summary()  # caller


@pytest.mark.parametrize("name, op", NOT_SYNCING, ids=[s[0] for s in NOT_SYNCING])
def test_counts_nothing_for_work_without_a_wait(name, op):
    x = _x()
    with HostSyncCounter() as c:
        op(x)
    assert c.count == 0, c.summary()


def test_copies_from_python_data_to_the_device_count():
    x = _x()
    with HostSyncCounter() as c:
        torch.tensor([1.0, 2.0])  # a host tensor: no copy to the device
        torch.tensor(0.5, dtype=torch.float64)
        torch.tensor([1.0, 2.0], device=x.device)  # a blocking copy on a GPU
        torch.as_tensor([1, 2], device=x.device)
        x.new_tensor([0.0, 0.0, 1.0, 1.0])
    assert [e.op for e in c.events] == ["tensor", "as_tensor", "new_tensor"], c.summary()


def test_host_blocks_are_left_out_and_the_count_resumes_after():
    x = _x()
    with HostSyncCounter() as c:
        with on_host():
            torch.nonzero(x)
            x.tolist()
            with on_host():  # nested
                x.sum().item()
            torch.unique(x)
        x.sum().item()
    assert [e.op for e in c.events] == ["_local_scalar_dense"], c.summary()


def test_an_added_item_is_seen_through_autograd_and_modules():
    """Backward ops count too (a boolean index's backward scatters through nonzero)."""
    lin = torch.nn.Linear(5, 3)
    x = _x().requires_grad_()
    with HostSyncCounter() as c:
        lin(x).sum().backward()
    assert c.count == 0, c.summary()
    with HostSyncCounter() as c:
        y = lin(x)
        y.sum().item()
        y[y > 0].sum().backward()
    assert [e.op for e in c.events] == ["_local_scalar_dense", "index", "index_put"], c.summary()


def test_on_a_cuda_device_only_cuda_tensors_count():
    """Given a CUDA device the counter checks each tensor's device: host work is free."""
    x = _x()
    with HostSyncCounter("cuda") as c:
        x.sum().item()
        torch.nonzero(x)
        x.tolist()
        x.to("cpu")
        torch.tensor([1.0], device="cpu")
    assert c.count == 0, c.summary()


def test_only_the_entering_thread_is_counted():
    x = _x()
    with HostSyncCounter() as c:
        t = threading.Thread(target=lambda: [torch.nonzero(x), x.tolist()])
        t.start()
        t.join()
        x.tolist()
    assert [e.op for e in c.events] == ["tolist"], c.summary()


def test_summary_groups_repeated_events():
    x = _x()
    with HostSyncCounter() as c:
        for _ in range(3):
            x.sum().item()
    assert c.count == 3
    assert c.summary().startswith("3 x _local_scalar_dense at ")
    assert "test_sync_counter.py:" in c.summary() and c.summary().count("\n") == 0


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("name, op, n", SYNCING + [(s[0], s[1], 0) for s in NOT_SYNCING],
                         ids=[s[0] for s in SYNCING + NOT_SYNCING])
def test_cuda_counter_agrees_with_the_sync_debug_mode(name, op, n):
    """On a GPU, the counter (given the device) and torch's own sync debug mode count the
    same, and the CPU simulation counted the same as well (the tables above)."""
    x = _x("cuda")
    op(x)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with HostSyncCounter("cuda") as c:
                op(x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    reported = sum("synchroniz" in str(w.message) for w in caught)
    assert c.count == n, c.summary()
    assert reported == n, [str(w.message) for w in caught]
