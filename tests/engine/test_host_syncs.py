"""Host synchronisations of a whole training step of ``mine`` and ``refine``, counted on the CPU
(:class:`jtsm.ops.sync_counter.HostSyncCounter` simulates a GPU step: every tensor lives on
the device except the host work the code marks as such).

The model's part of a step (forward, losses, backward, optimiser step) makes none, whatever
the number of proposals or images; the trainer reads the losses once per image (their
finiteness check and the log) and the gradient norm once per step.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jtsm.config import SolverConfig, load_config
from jtsm.data.mining_dataset import to_tensor
from jtsm.data.refine_dataset import RefineItem
from jtsm.engine.mine import MilTrainModule
from jtsm.engine.refine import RefineTrainModule
from jtsm.engine.trainer import train
from jtsm.modeling.build import build_model
from jtsm.ops.sync_counter import HostSyncCounter
from jtsm.structures import CategoryMap, ProposalSet

CATS = CategoryMap.from_coco([{"id": i + 1, "name": f"c{i}", "isthing": int(i < 3)}
                              for i in range(5)])
#: host synchronisations of the model's part of a training step (see docs/gpus.md)
MODEL_STEP_SYNCS = 0


def make_item(n_prop: int, seed: int, h: int = 64, w: int = 80) -> RefineItem:
    """A training item of ``n_prop`` random proposals over 40 Voronoi superpixels, two tags,
    one pseudo instance and a stuff region (the refine fields)."""
    rng = np.random.default_rng(seed)
    n_sp = 40
    cy, cx = rng.uniform(0, h, n_sp), rng.uniform(0, w, n_sp)
    yy, xx = np.mgrid[0:h, 0:w]
    spm = ((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2).argmin(-1).astype(np.int32)
    member = rng.random((n_prop, n_sp)) < 0.1
    member[np.arange(n_prop), rng.integers(0, n_sp, n_prop)] = True
    ps = ProposalSet(spm, sp.csr_matrix(member), scores=rng.uniform(0, 1, n_prop))
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    tags = torch.zeros(CATS.num_classes)
    tags[[0, 4]] = 1
    masks = np.zeros((1, h, w), bool)
    masks[0, 10:30, 10:40] = True
    stuff = np.full((h, w), -1, np.int64)
    stuff[40:, :] = 1
    return RefineItem(to_tensor(image), tags, ps, seed, torch.from_numpy(masks),
                      torch.tensor([0]), torch.ones(1), torch.from_numpy(stuff))


def make_module(stage: str, n_prop: int, *overrides: str) -> torch.nn.Module:
    preset = "synth_quick" if stage == "mine" else "synth_refine_quick"
    cfg = load_config(preset, [f"input.max_proposals={n_prop}", "mining.fc_dim=32",
                               "mining.oicr_heads=2", *overrides])
    torch.manual_seed(0)
    model = build_model(cfg, CATS, stage, "cpu", pretrained=False)
    module = RefineTrainModule(model, cfg) if stage == "refine" else MilTrainModule.from_config(
        model, cfg)
    return module.train()


def step_syncs(module: torch.nn.Module, items: list[RefineItem],
               device: str = "cpu") -> HostSyncCounter:
    """Count one training step over ``items``: forward, losses and backward per item, then
    the optimiser's step (``device``: the module's)."""
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1e-3,
                          momentum=0.9)
    with HostSyncCounter(device) as counter:
        opt.zero_grad(set_to_none=True)
        for item in items:
            losses = module(item)
            (sum(losses.values()) / len(items)).backward()
        opt.step()
    return counter


@pytest.mark.parametrize("stage, overrides", [("mine", ()), ("refine", ()),
                                              ("mine", ("mining.oicr_overlap=mask",))],
                         ids=["mine", "refine", "mine-mask-iou"])
def test_a_training_step_is_free_of_host_syncs_whatever_its_size(stage, overrides):
    counts = {}
    for n_prop in (100, 1000):
        module = make_module(stage, n_prop, *overrides)
        for n_img in (1, 2):
            items = [make_item(n_prop, seed) for seed in range(n_img)]
            c = step_syncs(module, items)
            counts[n_prop, n_img] = c.count
            assert c.count <= MODEL_STEP_SYNCS, f"{n_prop} proposals, {n_img} images:\n" + \
                c.summary()
    assert set(counts.values()) == {MODEL_STEP_SYNCS}, counts


def test_the_tag_warm_up_step_is_free_of_host_syncs_too():
    from jtsm.engine.mine import TagWarmupModule

    module = TagWarmupModule(make_module("mine", 100).model).train()
    gen = torch.Generator().manual_seed(0)
    batch = (torch.rand(2, 3, 64, 80, generator=gen) * 255,
             torch.tensor([[1.0, 0, 0, 0, 1], [0, 1, 0, 0, 0]]))
    c = step_syncs(module, [batch, batch])
    assert c.count == 0, c.summary()


def test_the_counter_sees_an_added_item_once_per_image():
    """The count can fail: a module that reads a loss on the host per image shows it."""
    class Reading(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, item):
            losses = self.inner(item)
            losses["loss_mil"].item()
            return losses

    module = Reading(make_module("mine", 100))
    for n_img in (1, 2):
        c = step_syncs(module, [make_item(100, seed) for seed in range(n_img)])
        assert c.count == MODEL_STEP_SYNCS + n_img, c.summary()
        assert all(e.op == "_local_scalar_dense" and "test_host_syncs.py" in e.where
                   for e in c.events)


class _Items:
    """A trainer task over ready items."""

    def __init__(self, items: list[RefineItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int, rng: np.random.Generator) -> RefineItem:
        return replace(self.items[index])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_trainer_iteration_reads_the_losses_and_the_gradient_once(optimizer):
    """Through :func:`jtsm.engine.trainer.train` (items loaded in the loop, so the loading is
    counted too): one iteration more costs one host read of every image's losses (their
    finiteness check and the logged values, one ``tolist``) and one of the gradient norm's
    finiteness, whatever the proposals (100 or 1000) and images per batch (1 or 2)."""
    per_iteration = {}
    for n_prop in (100, 1000):
        items = [make_item(n_prop, seed) for seed in range(2)]
        for n_img in (1, 2):
            totals = []
            for iters in (1, 2):
                module = make_module("mine", n_prop)
                solver = SolverConfig(optimizer=optimizer, lr=1e-3, max_iter=iters,
                                      ims_per_batch=n_img, warmup_iters=0, steps=[],
                                      load_threads=0, log_period=1)
                with HostSyncCounter("cpu") as c:
                    train(module, _Items(items), solver, seed=0, run_dir=None)
                totals.append(c)
            extra = totals[1].events[len(totals[0].events):]
            per_iteration[n_prop, n_img] = len(extra)
            ops = sorted(e.op for e in extra)
            assert ops == sorted(["tolist", "_local_scalar_dense"]), totals[1].summary()
            assert all("jtsm/engine/trainer.py" in e.where for e in extra), totals[1].summary()
    assert per_iteration == {(n, k): 2 for n in (100, 1000) for k in (1, 2)}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("stage", ["mine", "refine"])
def test_cuda_a_training_step_waits_for_the_device_as_counted(stage):
    """On a GPU, with items pinned as the loader pins them: torch's sync debug mode reports
    what the counter counts, none per step with the Triton kernel (the op's torch path:
    one in backward per image), for 100 or 1000 proposals and 1 or 2 images."""
    import warnings

    from jtsm.ops.binned_max_triton import available as triton_available

    per_image = 0 if triton_available() else 1
    for n_prop in (100, 1000):
        module = make_module(stage, n_prop).cuda()
        for n_img in (1, 2):
            items = [make_item(n_prop, seed).pinned("cuda") for seed in range(n_img)]
            step_syncs(module, items, "cuda")  # warm-up: kernels compiled, allocator filled
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    counted = step_syncs(module, items, "cuda")
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
            reported = sum("synchroniz" in str(w.message) for w in caught)
            assert reported == per_image * n_img, [str(w.message) for w in caught]
            assert counted.count == 0, counted.summary()
