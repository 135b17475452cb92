"""Shared fixtures: a small generated dataset, made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``jtsm data synth`` dataset: 12 train + 6 val images of 96x112 px."""
    from jtsm.data.synth import SynthConfig, write_synth_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, 12, 6, SynthConfig(height=96, width=112), seed=3)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """Test workloads are small: one thread avoids OpenMP overhead (far slower when busy)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Each test sees plugins loaded afresh from its own environment."""
    from jtsm import plugins

    plugins.reset()
    yield
    plugins.reset()


def _skimage_graph_segment(image, k: float, sigma: float = 0.8, min_size: int | None = None):
    """scikit-image's Felzenszwalb segmentation in place of OpenCV-contrib's (same contract)."""
    import numpy as np
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image, scale=k, sigma=sigma,
                        min_size=int(k if min_size is None else min_size)).astype(np.int32)


@pytest.fixture(scope="session")
def synth_proposals(synth_dir: Path) -> Path:
    """Felzenszwalb proposals (the cheapest built-in) for every image of ``synth_dir``.

    Where OpenCV has no contrib modules (a GPU node's own Python, see benchmarks/gpu_check.sh)
    the regions come from scikit-image's Felzenszwalb segmentation instead: the same kind of
    proposals, so that the tests on them (the CUDA ones among them) still run."""
    import cv2

    from jtsm.proposals import felzenszwalb
    from jtsm.proposals.runner import list_images, run_proposals

    out = synth_dir / "proposals_fz"
    with pytest.MonkeyPatch.context() as mp:
        if not hasattr(cv2, "ximgproc"):
            mp.setattr(felzenszwalb, "felzenszwalb_segment", _skimage_graph_segment)
        for split in ("train", "val"):
            items = list_images(synth_dir / "images",
                                synth_dir / "annotations" / f"panoptic_{split}.json")
            list(run_proposals(items, out, method="felzenszwalb", max_proposals=300, workers=1))
    return out
