"""What lies in the folders jtsm writes: every file name, spelled here and nowhere else.

A **training run** (``jtsm mine``, ``jtsm refine``)::

    RUN/config.json            the resolved config (json)
    RUN/meta.json              stage, categories, absolute input paths, run_id, fingerprint
    RUN/model_final.pt         the trained model's weights (a weights-only state dict)
    RUN/checkpoints/           <stage>_<iteration>.pt (two newest per stage) and last_<stage>
    RUN/metrics.jsonl          one json record per logged iteration
    RUN/log.txt                the progress lines
    RUN/presence.json          per-class presence thresholds (calibrated on training tags)
    RUN/mined/                 the segments of the training images (tags known) as the trained
                               model gives them: panoptic.json + PNGs, detections.json
                               (mine: the mined segments; refine: the refined ones)
    RUN/tensorboard/           TensorBoard scalars (when tensorboard is installed)
    RUN/.summary.json          the command's summary, handed from its workers (then removed)

The folders of ``viz`` and ``data synth`` hold a record of the files they wrote
(``.jtsm-viz``, ``.jtsm-synth``: :mod:`jtsm.rundir.outputs`). Beside any folder ``OUT`` a
command writes: ``.OUT.lock`` while it writes
(:mod:`jtsm.rundir.lock`), ``.OUT.partial`` for outputs replaced as a set
(:mod:`jtsm.rundir.staging`).

A **proposal store** (``jtsm proposals``) and the output folders of ``relabel`` and
``predict`` record what made them in their own ``meta.json`` the same way.
:class:`RunDir` gives the paths of one training run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINTS", "CONFIG", "DETECTIONS", "FINAL_WEIGHTS", "INSTANCES", "LOG",
           "META", "METRICS", "MINED", "PANOPTIC_JSON", "PANOPTIC_PNGS", "PARTS",
           "PREDICT_ENTRIES", "PRESENCE", "RELABEL_ENTRIES", "RUN_ENTRIES", "RunDir",
           "STORE_ENTRIES", "STORE_INDEX", "STORE_MARKERS", "SUMMARY",
           "TENSORBOARD", "VIZ", "lock_path", "output_record", "staging_path"]

CONFIG = "config.json"
META = "meta.json"
FINAL_WEIGHTS = "model_final.pt"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
LOG = "log.txt"
PRESENCE = "presence.json"
MINED = "mined"
TENSORBOARD = "tensorboard"
SUMMARY = ".summary.json"

# the panoptic outputs of mine (RUN/mined/), relabel and predict
PANOPTIC_JSON = "panoptic.json"
PANOPTIC_PNGS = "panoptic"
DETECTIONS = "detections.json"
INSTANCES = "instances.json"
PARTS = "parts"
VIZ = "viz"

#: What ``--overwrite`` removes from a training run folder (nothing else of the folder).
#: (``*_final.pt``: the per-stage weights files of runs made before there was one weights file.)
RUN_ENTRIES = (CONFIG, META, FINAL_WEIGHTS, "*_final.pt", CHECKPOINTS, METRICS, LOG, MINED,
               PRESENCE, TENSORBOARD)
#: The entries of a relabel output folder (``--overwrite`` removes these and nothing else).
RELABEL_ENTRIES = (PANOPTIC_JSON, PANOPTIC_PNGS, PARTS, META)
#: A proposal store's index (``index.json``; shards of a job: ``index.shardI-of-N.json``).
STORE_INDEX = "index"
#: What ``--overwrite`` removes from a proposal store; a store is one when it holds these.
STORE_ENTRIES = ("**/*.npz", f"{STORE_INDEX}*.json", META, VIZ)
STORE_MARKERS = (META, f"{STORE_INDEX}.json")
#: The entries of a predict output folder, replaced as a set.
PREDICT_ENTRIES = (PANOPTIC_JSON, PANOPTIC_PNGS, INSTANCES, DETECTIONS, VIZ, META)


class RunDir:
    """The paths of one training run folder (see the module docstring); nothing is read or
    written by constructing one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def meta(self) -> Path:
        return self.path / META

    @property
    def weights(self) -> Path:
        """The trained model's weights (what predict and refine load)."""
        return self.path / FINAL_WEIGHTS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def presence(self) -> Path:
        return self.path / PRESENCE

    @property
    def mined(self) -> Path:
        """The folder of mine's outputs (``panoptic.json`` + PNGs, ``detections.json``)."""
        return self.path / MINED

    @property
    def mined_json(self) -> Path:
        return self.mined / PANOPTIC_JSON

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    def checkpoint(self, stage: str, iteration: int) -> Path:
        """``checkpoints/<stage>_<iteration, 7 digits>.pt``."""
        return self.checkpoints / f"{stage}_{iteration:07d}.pt"

    def checkpoint_glob(self, stage: str) -> list[Path]:
        """The stage's checkpoint files, oldest first."""
        return sorted(self.checkpoints.glob(f"{stage}_[0-9]*.pt"))

    def last_marker(self, stage: str) -> Path:
        """The file naming the stage's newest checkpoint (``checkpoints/last_<stage>``)."""
        return self.checkpoints / f"last_{stage}"

    def read_meta(self) -> dict[str, Any] | None:
        """``meta.json`` as a dict, ``None`` when absent (see :func:`read_meta`)."""
        return read_meta(self.path)


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file of folder ``out``: ``.OUT.lock`` beside it."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


def staging_path(out: str | os.PathLike[str]) -> Path:
    """The hidden sibling folder the outputs of ``out`` are written into first."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def output_record(command: str) -> str:
    """The record ``viz`` and ``data synth`` leave in their output folder, listing the files
    they wrote (:mod:`jtsm.rundir.outputs`): ``.jtsm-<the command's last word>``."""
    return f".jtsm-{command.split()[-1]}"


def read_meta(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``FOLDER/meta.json`` (what made a run folder, store or output folder) as a dict, or
    ``None`` when the folder has none; anything but a JSON object is a
    :class:`jtsm.errors.DataError`."""
    from jtsm.errors import DataError
    from jtsm.fileio import read_json

    path = Path(folder) / META
    if not path.is_file():
        return None
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: malformed metadata (not a JSON object)")
    return meta
