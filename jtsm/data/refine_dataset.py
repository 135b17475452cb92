"""Training items for ``jtsm refine``: the mining item plus pseudo instance and stuff labels.

Pseudo labels are any COCO panoptic json + PNGs (``jtsm relabel``'s output, ``RUN/mined/``,
or real ground truth for the fully-supervised upper bound). Tags are the classes of an image's
pseudo segments. The panoptic map is resized (nearest) and flipped with the image and its
proposals, so every target lines up with the augmented image. The instance branch's boxes and
mask targets (:func:`instance_targets`) are made by the loader too, on the host, when the
dataset is given their settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

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
from jtsm.ops.boxes import box_iou
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.roi_align import roi_align
from jtsm.ops.sync_counter import on_host
from jtsm.structures import CategoryMap, masks_to_boxes

__all__ = ["RefineDataset", "RefineItem", "RoiSettings", "instance_targets", "pseudo_targets"]

#: ``(max_rois, iou, mask_out)`` of :func:`instance_targets`
RoiSettings = tuple[int, float, int]


@dataclass
class RefineItem(MiningItem):
    """A :class:`MiningItem` with its pseudo labels at the augmented size.

    Attributes:
        thing_masks: ``(K, H, W)`` bool pseudo instance masks.
        thing_classes: ``(K,)`` int64 thing indices (``0 .. num_things-1``).
        thing_weights: ``(K,)`` float32 loss weights (the segments' ``score``, 1 without).
        stuff_map: ``(H, W)`` int64 stuff index (``0 .. num_stuff-1``), -1 elsewhere.
        roi_targets: :func:`instance_targets` of the item, when the loader made them, and
            ``roi_settings`` the settings they were made with.
    """

    thing_masks: torch.Tensor | None = None
    thing_classes: torch.Tensor | None = None
    thing_weights: torch.Tensor | None = None
    stuff_map: torch.Tensor | None = None
    roi_targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = field(
        default=None, kw_only=True, repr=False)
    roi_settings: RoiSettings | None = field(default=None, kw_only=True, repr=False)

    def instance_targets(self, max_rois: int, iou: float, mask_out: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`instance_targets` of this item: the loader's when it made them with these
        settings, else made now (on the host)."""
        if self.roi_targets is not None and self.roi_settings == (max_rois, iou, mask_out):
            return self.roi_targets
        with on_host():
            return instance_targets(self, max_rois, iou, mask_out)


@torch.no_grad()
def instance_targets(item: RefineItem, max_rois: int, iou: float, mask_out: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes the instance loss is taken on, with their pseudo class, mask and weight.

    The pseudo instances' own boxes, then proposal boxes overlapping a pseudo instance's box at
    box IoU >= ``iou`` (best overlap first), at most ``max_rois``. A box's target is its
    instance's mask cropped to the box and resampled to ``mask_out x mask_out`` (RoIAlign on
    the mask, >= 0.5). Host tensors in, host tensors out.

    Returns:
        boxes ``(K, 4)`` XYXY, classes ``(K,)`` thing indices, targets ``(K, M, M)`` float 0/1,
        weights ``(K,)``.
    """
    masks = item.thing_masks
    assert masks is not None and item.thing_classes is not None and item.thing_weights is not None
    n = masks.shape[0]
    if n == 0:
        m = mask_out
        return (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.zeros(0, m, m),
                torch.zeros(0))
    gt = torch.from_numpy(masks_to_boxes(masks.numpy()))
    props = torch.from_numpy(item.proposals.boxes.astype(np.float32))
    ov = box_iou(props, gt)  # (P, n)
    best, arg = ov.max(1) if len(props) else (torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    pos = torch.nonzero(best >= iou).squeeze(1)
    pos = pos[torch.argsort(-best[pos], stable=True)]
    boxes = torch.cat([gt, props[pos]])[:max_rois]
    owner = torch.cat([torch.arange(n), arg[pos]])[:max_rois]
    rois = torch.cat([owner[:, None].float(), boxes], 1)
    targets = roi_align(masks[:, None].float(), rois, mask_out, 1.0, sampling_ratio=2,
                        aligned=True)[:, 0] >= 0.5
    return boxes, item.thing_classes[owner], targets.float(), item.thing_weights[owner]


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
        roi_settings: ``(max_rois, iou, mask_out)``: the loader makes each item's
            :func:`instance_targets` with them (``None``: the step makes them).
    """

    def __init__(self, pseudo: str | os.PathLike[str], images_dir: str | os.PathLike[str],
                 proposals_dir: str | os.PathLike[str], cfg: InputConfig,
                 categories: CategoryMap | None = None,
                 roi_settings: RoiSettings | None = None) -> None:
        labels = read_image_labels(pseudo)
        if categories is not None and labels.categories.ids != categories.ids:
            raise DataError(f"{pseudo}: its categories {labels.categories.ids} are not the "
                            f"run's {categories.ids}")
        super().__init__(labels, images_dir, proposals_dir, cfg)
        self.pseudo: PanopticDataset = load_panoptic_json(pseudo)
        self.roi_settings = roi_settings

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
        item = RefineItem(to_tensor(image), tags, ps, rec.id, torch.from_numpy(masks),
                          torch.from_numpy(classes), torch.from_numpy(weights),
                          torch.from_numpy(stuff),
                          proposal_tensors=ProposalTensors.from_proposal_set(ps))
        if self.roi_settings is not None:
            item.roi_targets = instance_targets(item, *self.roi_settings)
            item.roi_settings = self.roi_settings
        return item.pinned(self.model_device)
