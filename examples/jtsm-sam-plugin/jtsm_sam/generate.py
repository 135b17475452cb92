"""The ``sam`` proposal generator: SAM's automatic masks as a :class:`ProposalSet`.

SAM's ``SamAutomaticMaskGenerator`` prompts the model with a ``points_per_side`` x
``points_per_side`` grid of points (and, with ``crop_n_layers``, again on image crops), keeps
the masks whose predicted IoU and stability score pass their thresholds and removes duplicates
with box NMS. Every kept mask becomes one proposal, exact at pixel level
(:meth:`ProposalSet.from_masks`), scored

    score = clip(predicted IoU, 0, 1) x stability score,

both of SAM's own quality measures, so a score lies in ``[0, 1]`` (the predicted IoU is a
regression output and can leave ``[0, 1]`` slightly; the stability score, an IoU between the
mask thresholded at ``+offset`` and at ``-offset``, cannot). The best ``--max`` are kept.

``union=METHOD`` adds another generator's proposals (e.g. ``selective-search``): all SAM masks
are kept and the other method's best fill the rest of ``--max``, so the whole objects of a
hierarchical grouping and SAM's parts and objects are both present. Each proposal keeps the
score of its own method. Options of the other method are given as ``union.KEY=VALUE``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from jtsm.errors import ConfigError
from jtsm.proposals.overlay import overlay
from jtsm.structures import ProposalSet

__all__ = ["AMG_OPTIONS", "SamOptions", "generate", "mask_records", "records_to_proposals",
           "union_proposals"]

#: SamAutomaticMaskGenerator's own options that ``--opt`` may set, with their types
AMG_OPTIONS: dict[str, type] = {
    "points_per_side": int,
    "points_per_batch": int,
    "pred_iou_thresh": float,
    "stability_score_thresh": float,
    "stability_score_offset": float,
    "box_nms_thresh": float,
    "crop_n_layers": int,
    "crop_nms_thresh": float,
    "crop_overlap_ratio": float,
    "crop_n_points_downscale_factor": int,
    "min_mask_region_area": int,
}
#: the plugin's own options
OWN_OPTIONS = ("checkpoint", "model", "model_config", "device", "union")
UNION_PREFIX = "union."


def _typed(key: str, value: Any, kind: type) -> Any:
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int or value < 0:
            raise ConfigError(f"--opt {key}={value!r}: expected a whole number >= 0")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"--opt {key}={value!r}: expected a number")
    return float(value)


@dataclass(frozen=True)
class SamOptions:
    """``--opt`` values of the ``sam`` method, checked (see :meth:`parse`)."""

    checkpoint: str | None = None
    model: str | None = None
    model_config: str | None = None
    device: str | None = None
    union: str | None = None
    union_options: dict[str, Any] = field(default_factory=dict)
    amg: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> SamOptions:
        """Split ``--opt`` values into the plugin's, SAM's and the union method's.

        Raises:
            ConfigError: an unknown option or a value of the wrong type (named).
        """
        own: dict[str, Any] = {}
        amg: dict[str, Any] = {}
        union_opts: dict[str, Any] = {}
        for key, value in options.items():
            if key in OWN_OPTIONS:
                own[key] = None if value is None else str(value)
            elif key in AMG_OPTIONS:
                amg[key] = _typed(key, value, AMG_OPTIONS[key])
            elif key.startswith(UNION_PREFIX) and len(key) > len(UNION_PREFIX):
                union_opts[key[len(UNION_PREFIX):]] = value
            else:
                known = ", ".join(list(OWN_OPTIONS) + list(AMG_OPTIONS))
                raise ConfigError(f"--opt {key}: not an option of method 'sam' (options: "
                                  f"{known}, union.KEY)")
        if amg.get("points_per_side", 1) < 1 or amg.get("points_per_batch", 1) < 1:
            raise ConfigError("--opt points_per_side and points_per_batch must be >= 1")
        if union_opts and not own.get("union"):
            raise ConfigError(f"--opt {UNION_PREFIX}KEY given without --opt union=METHOD")
        if own.get("union") == "sam":
            raise ConfigError("--opt union=sam: the union is with another method")
        return cls(own.get("checkpoint"), own.get("model"), own.get("model_config"),
                   own.get("device"), own.get("union"), union_opts, amg)


def mask_records(image: np.ndarray, opts: SamOptions) -> list[dict[str, Any]]:
    """SamAutomaticMaskGenerator's records for an RGB ``uint8`` image ``(H, W, 3)``.

    Each record has ``segmentation`` ``(H, W)`` bool, ``predicted_iou``, ``stability_score``,
    ``area`` and more (segment-anything's format).

    Raises:
        ConfigError: bad model/checkpoint/device/options (:func:`jtsm_sam.model.load_sam`).
    """
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from jtsm_sam.model import load_sam, resolve_device

    device = resolve_device(opts.device)
    sam = load_sam(opts.checkpoint, opts.model, opts.model_config, device)
    try:
        amg = SamAutomaticMaskGenerator(sam, output_mode="binary_mask", **opts.amg)
    except (AssertionError, ValueError) as exc:
        given = " ".join(f"{k}={v}" for k, v in opts.amg.items())
        raise ConfigError(f"SAM rejected --opt {given}: {exc}") from None
    with torch.inference_mode():
        return amg.generate(np.ascontiguousarray(image))


def record_scores(records: list[dict[str, Any]]) -> np.ndarray:
    """``(N,)`` float32 ``clip(predicted_iou, 0, 1) * stability_score`` of SAM's records."""
    iou = np.array([r["predicted_iou"] for r in records], np.float64)
    stab = np.array([r["stability_score"] for r in records], np.float64)
    score = np.clip(iou, 0.0, 1.0) * np.clip(stab, 0.0, 1.0)
    return np.nan_to_num(score, nan=0.0).astype(np.float32)  # NaN: an empty mask's stability


def records_to_proposals(
    records: list[dict[str, Any]], size: tuple[int, int], max_proposals: int | None = None
) -> ProposalSet:
    """SAM's records -> proposals of an image of ``size`` ``(H, W)``, the best ``max_proposals``.

    Empty masks and exact duplicates are dropped; scores by :func:`record_scores`.
    """
    h, w = size
    masks = np.stack([np.asarray(r["segmentation"], bool) for r in records]) if records \
        else np.zeros((0, h, w), bool)
    if masks.shape[1:] != (h, w):
        raise ValueError(f"SAM masks are {masks.shape[1:]}, the image is {(h, w)}")
    scores = record_scores(records)
    keep = masks.reshape(len(masks), -1).any(axis=1)
    return ProposalSet.from_masks(masks[keep], scores[keep]).clean(max_proposals)


def union_proposals(first: ProposalSet, second: ProposalSet,
                    max_proposals: int | None = None) -> ProposalSet:
    """All of ``first``, then ``second``'s best to fill ``max_proposals``, on one superpixel map.

    The common map is the overlay of the two maps (each cell a set of pixels with the same
    superpixel in both), so every mask of either set stays exact. Scores are kept as they are.
    """
    if first.image_size != second.image_size:
        raise ValueError(f"proposal sets of {first.image_size} and {second.image_size}")
    budget = None if max_proposals is None else max(int(max_proposals) - len(first), 0)
    second = second.sorted() if budget is None else second.topk(budget)
    cells, labels = overlay([first.superpixels, second.superpixels])
    member = sp.vstack([first.membership[:, labels[0]], second.membership[:, labels[1]]])
    scores = np.concatenate([first.scores, second.scores])
    boxes = np.concatenate([first.boxes, second.boxes])
    return ProposalSet(cells.astype(np.int32), member.tocsr(), scores, boxes)


def generate(
    image: np.ndarray,
    *,
    image_path: Any = None,
    max_proposals: int | None = None,
    **options: Any,
) -> ProposalSet:
    """jtsm's generator signature: proposals of an RGB ``uint8`` image ``(H, W, 3)``.

    ``options`` are the ``--opt`` values: ``checkpoint`` (required), ``model``,
    ``model_config``, ``device``, ``union`` and ``union.KEY``, and SamAutomaticMaskGenerator's
    options (:data:`AMG_OPTIONS`).

    Raises:
        ConfigError: see :meth:`SamOptions.parse` and :func:`jtsm_sam.model.load_sam`.
    """
    from jtsm.plugins import get_proposal_generator
    from jtsm.proposals.runner import generate_one

    opts = SamOptions.parse(options)
    if opts.union is not None:
        get_proposal_generator(opts.union)  # an unknown name fails before SAM runs
    ps = records_to_proposals(mask_records(image, opts), image.shape[:2], max_proposals)
    if opts.union is None:
        return ps
    budget = None if max_proposals is None else max(int(max_proposals) - len(ps), 0)
    if budget == 0:
        return ps
    other = generate_one(image, opts.union, budget, image_path, opts.union_options)
    return union_proposals(ps, other, max_proposals)
