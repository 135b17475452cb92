"""Run folders: what a training command leaves, and how to load it back.

A run folder holds ``config.json`` (the resolved config), ``meta.json`` (stage, categories,
inputs), ``model_final.pt`` (a weights-only state dict), ``checkpoints/`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jtsm.config import Config, config_from_dict
from jtsm.engine.checkpoint import load_checkpoint
from jtsm.errors import ConfigError, DataError
from jtsm.fileio import read_json
from jtsm.modeling.build import STAGES, build_model
from jtsm.structures import CategoryMap

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    """A loaded run: its config, categories, stage and model (eval mode, on the device it was
    loaded onto)."""

    path: Path
    config: Config
    categories: CategoryMap
    stage: str
    model: nn.Module
    meta: dict[str, Any]
    presence: np.ndarray | None = None  # per-class thresholds calibrated on training tags


def load_run(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Run:
    """Load a run folder written by ``jtsm mine`` or ``jtsm refine``, its model on ``device``
    (weights trained on any device load onto any other).

    Raises:
        DataError: a missing or corrupt file, or weights that do not fit the run's config
            (the message names the file).
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a run folder")
    meta = read_json(path / "meta.json")
    try:
        cfg = config_from_dict(read_json(path / "config.json"))
    except ConfigError as exc:
        raise DataError(f"{path / 'config.json'}: {exc}") from None
    try:
        categories = CategoryMap.from_coco(meta["categories"])
        stage = str(meta["stage"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path / 'meta.json'}: malformed run metadata ({exc})") from None
    if stage in STAGES:
        model: nn.Module = build_model(cfg, categories, stage, device, pretrained=False)
    else:
        raise DataError(f"{path / 'meta.json'}: unknown stage {stage!r} (want mine or refine)")
    weights = path / "model_final.pt"
    state = load_checkpoint(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{weights}: weights do not fit the run's config ({first})") from None
    model.eval()
    presence = None
    if (path / "presence.json").is_file():
        th = read_json(path / "presence.json").get("thresholds")
        if not isinstance(th, list) or len(th) != categories.num_classes:
            raise DataError(f"{path / 'presence.json'}: expected {categories.num_classes} "
                            "thresholds")
        presence = np.asarray(th, np.float64)
    return Run(path, cfg, categories, stage, model, meta, presence)
