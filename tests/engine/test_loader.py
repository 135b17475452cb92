"""The training loader: threads per device, items prepared on the host (proposal tensors,
the instance branch's targets), the same losses as items prepared in the step."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from jtsm.config import load_config
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import MiningDataset
from jtsm.data.refine_dataset import RefineDataset, instance_targets
from jtsm.engine import loader
from jtsm.engine.loader import GPU_LOAD_THREADS, Prefetcher, loader_threads
from jtsm.engine.mine import MilTrainModule
from jtsm.engine.refine import RefineTrainModule
from jtsm.modeling.build import build_model

TINY = ["mining.fc_dim=32", "mining.oicr_heads=2", "input.train_scales=[64,80]",
        "input.max_proposals=100", "refine.mask_channels=16", "refine.semantic_channels=16"]


def test_cpu_models_load_in_the_loop_and_explicit_counts_are_kept():
    assert loader_threads(-1, torch.device("cpu")) == 0
    assert loader_threads(0, torch.device("cuda")) == 0
    assert loader_threads(3, torch.device("cpu")) == 3


@pytest.mark.parametrize("cores, env, expect", [
    (16, {}, GPU_LOAD_THREADS),  # capped
    (4, {}, 3),  # one core left to the step's own thread
    (2, {}, 1),
    (1, {}, 1),  # at least one
    (16, {"WORLD_SIZE": "8"}, 1),  # --gpus 8: 2 cores per process
    (16, {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "4"}, 3),  # torchrun: this machine's share
    (16, {"WORLD_SIZE": "junk"}, GPU_LOAD_THREADS),
])
def test_gpu_models_get_several_loader_threads(monkeypatch, cores, env, expect):
    monkeypatch.setattr(loader, "available_cores", lambda: cores)
    for k in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert loader_threads(-1, torch.device("cuda", 0)) == expect


def test_every_thread_has_an_item_in_flight():
    """With more threads than ``ahead``, each thread still gets a key: 4 loads that wait for
    each other all start (else the barrier would time out)."""
    barrier = threading.Barrier(4, timeout=10)

    def load(key: int) -> int:
        barrier.wait()
        return key

    with Prefetcher(load, range(4), threads=4, ahead=1) as items:
        assert list(items) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def refine_ds(synth_dir, synth_proposals):
    cfg = load_config(overrides=TINY)
    r = cfg.refine
    ds = RefineDataset(synth_dir / "annotations/panoptic_train.json", synth_dir / "images",
                       synth_proposals, cfg.input, None,
                       (r.mask_rois, r.roi_iou, 2 * r.mask_size))
    return cfg, ds


def test_the_loader_makes_the_instance_targets_the_step_made(refine_ds):
    cfg, ds = refine_ds
    r = cfg.refine
    for i in range(3):
        item = ds.load(i, np.random.default_rng(i))
        assert item.roi_targets is not None
        fresh = instance_targets(item, r.mask_rois, r.roi_iou, 2 * r.mask_size)
        got = item.instance_targets(r.mask_rois, r.roi_iou, 2 * r.mask_size)
        assert got is item.roi_targets
        assert all(torch.equal(a, b) for a, b in zip(got, fresh))
        other = item.instance_targets(r.mask_rois, r.roi_iou, 2 * r.mask_size + 2)
        assert other is not item.roi_targets and other[2].shape[1] == 2 * r.mask_size + 2


def _losses(module: torch.nn.Module, item: object) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # dropout
    return {k: v.detach() for k, v in module(item).items()}


def test_items_prepared_by_the_loader_give_the_losses_of_items_prepared_in_the_step(
        refine_ds, synth_dir, synth_proposals):
    """The CPU path is unchanged: proposal tensors and instance targets built by the loader
    give bit for bit the losses of the same item with everything built in the step."""
    cfg, ds = refine_ds
    torch.manual_seed(0)
    refine = RefineTrainModule(build_model(cfg, ds.categories, "refine", "cpu"), cfg).train()
    mining = MiningDataset(read_image_labels(synth_dir / "annotations/panoptic_train.json"),
                           synth_dir / "images", synth_proposals, cfg.input)
    torch.manual_seed(0)
    mine = MilTrainModule(build_model(cfg, mining.categories, "mine", "cpu")).train()
    for i in range(3):
        item = ds.load(i, np.random.default_rng(10 + i))
        bare = replace(item, proposal_tensors=None, roi_targets=None, roi_settings=None)
        a, b = _losses(refine, item), _losses(refine, bare)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (a, b)
        m_item = mining.load(i, np.random.default_rng(10 + i))
        a, b = _losses(mine, m_item), _losses(mine, replace(m_item, proposal_tensors=None))
        assert all(torch.equal(a[k], b[k]) for k in a), (a, b)
