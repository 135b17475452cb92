"""A trained run as a Python function, for notebooks and scripts.

Example::

    from jtsm import Predictor
    from jtsm.fileio import read_image

    predict = Predictor("runs/refine")          # a jtsm mine or jtsm refine run folder
    result = predict(read_image("photo.jpg"))   # RGB uint8 (H, W, 3)
    result.panoptic.ids                          # (H, W) segment ids, 0 = void
    for inst in result.instances:                # thing segments, best first
        print(inst["name"], inst["score"], inst["bbox"], inst["mask"].sum())

It runs what ``jtsm predict`` runs for one image (:func:`jtsm.engine.segment.segment_image`):
proposals with the run's method, the run's model, the same merging into panoptic segments.
A model in memory (a notebook's, trained without a run folder) is wrapped the same way with
:meth:`Predictor.from_model`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from jtsm.config import Config
from jtsm.errors import DataError
from jtsm.structures import CategoryMap, PanopticSeg

__all__ = ["Prediction", "Predictor"]


@dataclass
class Prediction:
    """One image's result.

    Attributes:
        panoptic: the panoptic segmentation: ``ids`` ``(H, W)`` int64 (0 = void) and
            ``segments`` (COCO ``segments_info`` with ``category_id``, ``area``, ``bbox``,
            ``score``).
        instances: one dict per thing segment, best score first: ``category_id``, ``name``,
            ``score``, ``bbox`` (XYWH) and ``mask`` (``(H, W)`` bool).
        detections: boxes of every class found (COCO result dicts: ``category_id``, ``bbox``,
            ``score``), the detection output of ``jtsm predict``.
        categories: the run's categories (names, ``isthing``).
    """

    panoptic: PanopticSeg
    instances: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    categories: CategoryMap | None = None

    def name(self, category_id: int) -> str:
        """The class name of a category id."""
        if self.categories is None:
            return str(category_id)
        return next((str(c["name"]) for c in self.categories.categories
                     if int(c["id"]) == int(category_id)), str(category_id))


class Predictor:
    """Load a run once; call it on RGB images.

    Arguments:
        run: a run folder written by ``jtsm mine`` or ``jtsm refine``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``; by default CUDA
            when this machine has it, else the CPU.
        tta: average all of the run's test scales and horizontal flips (slower).

    Raises:
        DataError: the run folder is missing or damaged (naming the file).
        ConfigError: an unknown or absent device.
    """

    def __init__(self, run: str | os.PathLike[str], device: str | torch.device | None = None,
                 tta: bool = False) -> None:
        from jtsm.engine.device import resolve_device
        from jtsm.engine.runs import load_run

        dev = device if isinstance(device, torch.device) else resolve_device(device)
        self.run = load_run(run, dev)
        self.device = dev
        self.tta = tta

    @classmethod
    def from_model(cls, model: torch.nn.Module, categories: CategoryMap, config: Config,
                   presence: np.ndarray | None = None, tta: bool = False) -> Predictor:
        """A predictor over a model in memory (a ``MiningModel`` or a ``PanopticModel`` of
        ``categories``, as ``config`` builds it), on the device its parameters are on.

        Arguments:
            presence: per-class presence thresholds ``(C,)`` (a run's ``presence.json``);
                ``None``: ``segments.presence_threshold`` for every class.
        """
        from jtsm.engine.runs import Run
        from jtsm.modeling.panoptic_model import PanopticModel

        self = cls.__new__(cls)
        stage = "refine" if isinstance(model, PanopticModel) else "mine"
        self.run = Run(None, config, categories, stage, model.eval(), {}, presence)
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.tta = tta
        return self

    @property
    def categories(self) -> CategoryMap:
        return self.run.categories

    def __call__(self, image: np.ndarray) -> Prediction:
        """Predict one image: RGB uint8 ``(H, W, 3)`` (a greyscale ``(H, W)`` is accepted).

        Raises:
            DataError: an array of another shape or type.
        """
        from jtsm.data.mining_dataset import select_proposals
        from jtsm.engine.predict import predict_one
        from jtsm.engine.segment import thing_segments
        from jtsm.proposals import make_proposals

        image = _as_rgb(image)
        cfg = self.run.config
        ps = select_proposals(make_proposals(image, cfg.proposals, max_proposals=None),
                              cfg.input)
        with torch.no_grad():
            seg, dets = predict_one(self.run, image, ps, self.tta)
        cats = self.run.categories
        names = {int(c["id"]): str(c["name"]) for c in cats.categories}
        insts = [{"category_id": int(s["category_id"]), "name": names[int(s["category_id"])],
                  "score": float(s.get("score", 1.0)), "bbox": list(s["bbox"]), "mask": m}
                 for s, m in thing_segments(seg, cats)]
        insts.sort(key=lambda d: -d["score"])
        for d in dets:
            d.pop("image_id", None)
        return Prediction(seg, insts, dets, cats)


def _as_rgb(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise DataError(f"Predictor: expected an RGB uint8 image, got dtype {a.dtype} (read "
                        "files with jtsm.fileio.read_image, or convert with "
                        "skimage.util.img_as_ubyte)")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise DataError(f"Predictor: expected an RGB image of shape (H, W, 3), got {a.shape}")
    return np.ascontiguousarray(a)
