"""Run folders: what a training command leaves, and how to load it back.

What a run folder holds is :mod:`jtsm.rundir.layout`; :func:`load_run` reads its config,
metadata, weights and presence thresholds back into a model.
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
from jtsm.errors import ConfigError, DataError
from jtsm.fileio import read_json
from jtsm.modeling.build import STAGES, build_model
from jtsm.rundir.checkpoint import load_checkpoint
from jtsm.rundir.fingerprint import check_weights
from jtsm.rundir.layout import RunDir
from jtsm.structures import CategoryMap

__all__ = ["Run", "load_run", "read_presence"]


@dataclass
class Run:
    """A loaded run: its config, categories, stage and model (eval mode, on the device it was
    loaded onto)."""

    path: Path | None  # None: a model in memory (jtsm.Predictor.from_model)
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
    rd = RunDir(path)
    meta = read_json(rd.meta)
    try:
        cfg = config_from_dict(read_json(rd.config))
    except ConfigError as exc:
        raise DataError(f"{rd.config}: {exc}") from None
    try:
        categories = CategoryMap.from_coco(meta["categories"])
        stage = str(meta["stage"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{rd.meta}: malformed run metadata ({exc})") from None
    if stage in STAGES:
        model: nn.Module = build_model(cfg, categories, stage, device, pretrained=False)
    else:
        raise DataError(f"{rd.meta}: unknown stage {stage!r} (want mine or refine)")
    weights = rd.weights
    state = load_checkpoint(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{weights}: weights do not fit the run's config ({first})") from None
    check_weights(path, meta)  # well-formed weights that fit: are they this run's own?
    model.eval()
    presence = None
    if rd.presence.is_file():
        presence = read_presence(rd.presence, categories.num_classes)
    return Run(path, cfg, categories, stage, model, meta, presence)


def read_presence(path: str | os.PathLike[str], num_classes: int) -> np.ndarray:
    """A run's ``presence.json``: ``{"thresholds": [...]}``, one threshold per class, each a
    number in [0, 1] (image scores lie there) -> ``(num_classes,)`` float64.

    Raises:
        DataError: another shape, count or value, naming the file (and the class).
    """
    d = read_json(path)
    th = d.get("thresholds") if isinstance(d, dict) else None
    if not isinstance(th, list) or len(th) != num_classes:
        got = f"{len(th)}" if isinstance(th, list) else "none"
        raise DataError(f"{path}: expected {{\"thresholds\": [...]}} with {num_classes} "
                        f"thresholds, one per class (found {got})")
    for i, t in enumerate(th):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            names = d.get("classes")
            name = f" ({names[i]!r:.40})" if isinstance(names, list) and i < len(names) else ""
            raise DataError(f"{path}: thresholds[{i}]{name} is {t!r:.40}, not a number in "
                            "[0, 1]")
    return np.asarray(th, np.float64)
