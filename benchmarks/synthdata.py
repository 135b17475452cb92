"""Benchmark inputs: a generated dataset and its selective-search proposals, in ``root``.

    from synthdata import synth_with_proposals  # benchmarks/ (the script's folder is on sys.path)
"""

from __future__ import annotations

from pathlib import Path

from jtsm.data.synth import SynthConfig, write_synth_dataset
from jtsm.proposals.runner import list_images, run_proposals


def synth_with_proposals(root: Path, n_train: int, size: int = 128) -> tuple[Path, Path]:
    """Write ``n_train`` synthetic ``size`` x ``size`` training images (seed 0) to
    ``root/data`` and their selective-search proposals (top 2000) to ``root/props``; returns
    the two folders."""
    data, props = root / "data", root / "props"
    write_synth_dataset(data, n_train, 0, SynthConfig(height=size, width=size), seed=0)
    for _ in run_proposals(list_images(data / "images", data / "annotations/panoptic_train.json"),
                           props, method="selective-search", max_proposals=2000):
        pass
    return data, props
