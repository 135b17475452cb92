"""Panoptic prediction with the full model (after ``jtsm refine``).

Per image:

1. the mining branch scores the proposals (test scales and flips averaged, as for mining runs)
   and the image scores decide which classes are present (per-class calibrated thresholds);
2. things: the mined instances (:func:`jtsm.engine.selection.select_things`) give boxes and scores;
   the instance branch predicts each box's mask (its class's channel), pasted into the image
   and, with ``refine.snap = "superpixels"``, snapped to the proposals' superpixels (a
   superpixel is in when its mean probability is >= the threshold), so the 2S x 2S mask's
   outline follows the image's edges (``refine.things_from = "mined"``: the proposals' own
   masks, for ablations);
3. stuff: the semantic branch's per-pixel argmax over the present stuff classes (with
   ``refine.snap = "superpixels"`` of its probabilities averaged per superpixel)
   (``refine.stuff_from = "mined"``: the mined stuff segments);
4. the panoptic merge (docs/method.md) resolves overlaps: instances by score, then stuff.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from jtsm.config import Config
from jtsm.data.mining_dataset import resize_to_scale, to_tensor
from jtsm.engine.panoptic_merge import MergeConfig, merge_panoptic
from jtsm.engine.selection import mined_stuff, select_things
from jtsm.modeling.panoptic_model import PanopticModel
from jtsm.ops.superpixels import snap_to_superpixels, superpixel_means
from jtsm.structures import CategoryMap, PanopticSeg, ProposalSet

__all__ = ["paste_mask", "paste_prob", "refined_panoptic"]


def paste_prob(prob: np.ndarray, box: Sequence[float], image_size: tuple[int, int]
               ) -> np.ndarray:
    """A box's ``(M, M)`` mask probabilities resized into the box -> ``(H, W)`` float32,
    0 outside the box."""
    h, w = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    ix0, iy0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    ix1, iy1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
    out = np.zeros((h, w), np.float32)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    out[iy0:iy1, ix0:ix1] = cv2.resize(prob.astype(np.float32), (ix1 - ix0, iy1 - iy0),
                                       interpolation=cv2.INTER_LINEAR)
    return out


def paste_mask(prob: np.ndarray, box: Sequence[float], image_size: tuple[int, int],
               threshold: float = 0.5) -> np.ndarray:
    """A box's ``(M, M)`` mask probabilities resized into the box -> ``(H, W)`` bool mask."""
    return paste_prob(prob, box, image_size) >= threshold


@torch.no_grad()
def refined_panoptic(
    model: PanopticModel,
    image: np.ndarray,
    ps: ProposalSet,
    scores: np.ndarray,
    present: Sequence[int],
    categories: CategoryMap,
    cfg: Config,
    tagged: bool = False,
) -> PanopticSeg:
    """The full model's panoptic segmentation of one image.

    Arguments:
        image: ``(H, W, 3)`` uint8 RGB; ps: its proposals; scores: ``(P, C)`` mining scores
            (already averaged over test-time passes); present: present class indices.
        tagged: ``present`` are the image's tags. Otherwise an image where no stuff class
            passes its presence threshold takes the best of every stuff class per pixel; a
            tagged image without stuff tags keeps the pixels no instance covers void.
    Returns:
        segments with COCO ``category_id`` and ``score`` (stuff: its mean pixel probability).
    """
    h, w = image.shape[:2]
    device = next(model.parameters()).device
    sh, sw = resize_to_scale(h, w, int(cfg.input.test_scales[0]), cfg.input.max_size)
    img = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh),
                                                      interpolation=cv2.INTER_LINEAR)
    was_training = model.training
    model.eval()
    try:
        x = to_tensor(img)[None].to(device)
        feats = model.features(x)
        t_idx, t_cls, t_score = select_things(ps, scores, present, categories, cfg.segments)
        t_masks: list[np.ndarray] = []
        if t_idx and cfg.refine.things_from == "mined":
            t_masks = list(ps.masks(t_idx))
        elif t_idx:
            boxes = ps.boxes[t_idx].astype(np.float64)
            sx, sy = sw / w, sh / h
            scaled = torch.from_numpy(boxes * np.array([sx, sy, sx, sy])).float().to(device)
            probs = model.mask_logits(feats, scaled, x).sigmoid().cpu().numpy()
            pasted = np.stack([paste_prob(probs[k, categories.index(cid)], box, (h, w))
                               for k, (box, cid) in enumerate(zip(boxes, t_cls))])
            thr = cfg.refine.mask_threshold
            # all instances snapped in one pass over the superpixel map
            t_masks = list(snap_to_superpixels(pasted, ps.superpixels, thr)
                           if cfg.refine.snap == "superpixels" else pasted >= thr)
        s_masks: list[np.ndarray] = []
        s_cls: list[int] = []
        s_score: list[float] = []
        nt = categories.num_things
        stuff = [c - nt for c in present if c >= nt]
        if not stuff and not tagged:
            stuff = list(range(categories.num_stuff))
        if cfg.refine.stuff_from == "mined":
            s_masks, s_cls, s_score = mined_stuff(
                ps, scores, [c for c in present if c >= nt], categories, cfg.segments)
        elif stuff:
            prob = model.semantic_logits(feats, (h, w)).softmax(1)[0].cpu().numpy()
            sub = prob[stuff]
            if cfg.refine.snap == "superpixels":
                sub = superpixel_means(sub, ps.superpixels)
            arg = sub.argmax(0)
            for j, k in enumerate(stuff):
                m = arg == j
                if m.any():
                    s_masks.append(m)
                    s_cls.append(categories.category_id(nt + k))
                    s_score.append(float(sub[j][m].mean()))
    finally:
        model.train(was_training)
    merge = MergeConfig(stuff_area=cfg.segments.stuff_area)
    return merge_panoptic(t_masks, t_cls, t_score, s_masks, s_cls, s_score, merge, (h, w))
