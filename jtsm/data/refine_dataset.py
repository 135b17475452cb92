"""Training items for ``jtsm refine``: the mining item plus pseudo instance and stuff labels.

Pseudo labels are any COCO panoptic json + PNGs (``jtsm relabel``'s output, ``RUN/mined/``,
or real ground truth for the fully-supervised upper bound). Tags are the classes of an image's
pseudo segments. The panoptic map is resized (nearest) and flipped with the image and its
proposals, so every target lines up with the augmented image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from jtsm.config import InputConfig
from jtsm.data.coco_panoptic import PanopticDataset, load_panoptic_json
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import (
    MiningDataset,
    MiningItem,
    to_tensor,
)
from jtsm.errors import DataError
from jtsm.structures import CategoryMap

__all__ = ["RefineDataset", "RefineItem", "pseudo_targets"]


@dataclass
class RefineItem(MiningItem):
    """A :class:`MiningItem` with its pseudo labels at the augmented size.

    Attributes:
        thing_masks: ``(K, H, W)`` bool pseudo instance masks.
        thing_classes: ``(K,)`` int64 thing indices (``0 .. num_things-1``).
        thing_weights: ``(K,)`` float32 loss weights (the segments' ``score``, 1 without).
        stuff_map: ``(H, W)`` int64 stuff index (``0 .. num_stuff-1``), -1 elsewhere.
    """

    thing_masks: torch.Tensor | None = None
    thing_classes: torch.Tensor | None = None
    thing_weights: torch.Tensor | None = None
    stuff_map: torch.Tensor | None = None


def pseudo_targets(ids: np.ndarray, segments: list[dict], categories: CategoryMap
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Instance masks, thing indices, weights and the stuff index map of a panoptic map.

    Crowd segments are left out of both (their pixels stay unlabelled).
    """
    masks, classes, weights = [], [], []
    stuff = np.full(ids.shape, -1, np.int64)
    nt = categories.num_things
    for s in segments:
        if int(s.get("iscrowd", 0)):
            continue
        k = categories.index(int(s["category_id"]))
        m = ids == int(s["id"])
        if not m.any():
            continue
        if k < nt:
            masks.append(m)
            classes.append(k)
            weights.append(float(s.get("score", 1.0)))
        else:
            stuff[m] = k - nt
    h, w = ids.shape
    return (np.stack(masks) if masks else np.zeros((0, h, w), bool),
            np.asarray(classes, np.int64), np.asarray(weights, np.float32), stuff)


class RefineDataset(MiningDataset):
    """Images, their proposals and pseudo panoptic labels (a trainer task).

    Arguments:
        pseudo: COCO panoptic json of the pseudo labels (PNG folder beside it).
        images_dir, proposals_dir, cfg: as :class:`MiningDataset`.
        categories: the run's classes; the pseudo json must have the same ones.
    """

    def __init__(self, pseudo: str | os.PathLike[str], images_dir: str | os.PathLike[str],
                 proposals_dir: str | os.PathLike[str], cfg: InputConfig,
                 categories: CategoryMap | None = None) -> None:
        labels = read_image_labels(pseudo)
        if categories is not None and labels.categories.ids != categories.ids:
            raise DataError(f"{pseudo}: its categories {labels.categories.ids} are not the "
                            f"run's {categories.ids}")
        super().__init__(labels, images_dir, proposals_dir, cfg)
        self.pseudo: PanopticDataset = load_panoptic_json(pseudo)

    def load(self, index: int, rng: np.random.Generator) -> RefineItem:
        rec = self.records[index]
        image, ps = self.read(index)
        seg = self.pseudo.read(rec.id)
        if seg.image_size != image.shape[:2]:
            raise DataError(f"{self.pseudo.png_path(rec.id)}: pseudo label is "
                            f"{seg.image_size[1]}x{seg.image_size[0]}, the image "
                            f"{image.shape[1]}x{image.shape[0]}")
        listed = {int(s["id"]) for s in seg.segments}
        absent = listed - set(np.unique(seg.ids).tolist())
        if absent:
            raise DataError(f"{self.pseudo.png_path(rec.id)}: segment id(s) {sorted(absent)} "
                            "of segments_info have no pixels in the PNG")
        image, ps, ids = self.augment(image, ps, rng, seg.ids)
        assert ids is not None
        masks, classes, weights, stuff = pseudo_targets(ids, seg.segments, self.categories)
        tags = torch.from_numpy(self.categories.tag_vector(rec.labels))
        return RefineItem(to_tensor(image), tags, ps, rec.id, torch.from_numpy(masks),
                          torch.from_numpy(classes), torch.from_numpy(weights),
                          torch.from_numpy(stuff))
