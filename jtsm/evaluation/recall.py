"""Proposal quality: recall at mask IoU 0.5 / 0.7 and average best overlap (ABO).

For every non-crowd ground-truth segment, the best mask IoU over an image's proposals (its top
``k`` by score, for each ``k`` asked) is computed exactly and without dense proposal masks:
the intersections of superpixels with ground-truth segments come from one ``bincount`` over
(superpixel, segment) pairs, and a proposal's intersection is the sum over its superpixels,
``membership @ inter``. Void and crowd pixels count in a proposal's area (they are part of
the image) but never as a segment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jtsm.structures import ProposalSet

__all__ = ["best_overlaps", "evaluate_recall", "summarise"]

THRESHOLDS = (0.5, 0.7)


def best_overlaps(
    ps: ProposalSet, gt_ids: np.ndarray, segment_ids: Sequence[int], ks: Iterable[int | None]
) -> np.ndarray:
    """Best mask IoU of each segment over the top-``k`` proposals, for every ``k``.

    Arguments:
        ps: proposals of the image (ranked by score here).
        gt_ids: ``(H, W)`` ground-truth segment-id map (same size as ``ps``).
        segment_ids: ``G`` segment ids to score (others, e.g. void and crowd, are ignored).
        ks: proposal budgets, ``None`` = all proposals.

    Returns:
        ``(len(ks), G)`` float64 best IoUs (0 where there are no proposals).
    """
    ks = list(ks)
    g = len(segment_ids)
    if ps.image_size != tuple(gt_ids.shape):
        raise ValueError(f"proposals are {ps.image_size}, ground truth is {gt_ids.shape}")
    out = np.zeros((len(ks), g), np.float64)
    if g == 0 or len(ps) == 0:
        return out
    ps = ps.sorted()
    # ground-truth id -> column 0..G-1, anything else -> G (dropped)
    seg = np.asarray(segment_ids, np.int64)
    order = np.argsort(seg)
    flat = gt_ids.reshape(-1).astype(np.int64)
    pos = np.clip(np.searchsorted(seg[order], flat), 0, g - 1)
    col = np.where(seg[order][pos] == flat, order[pos], g)
    s = ps.num_superpixels
    joint = np.bincount(ps.superpixels.reshape(-1).astype(np.int64) * (g + 1) + col,
                        minlength=s * (g + 1)).reshape(s, g + 1)[:, :g]
    inter = np.asarray(ps.membership.astype(np.float64) @ joint.astype(np.float64))  # (P, G)
    gt_area = joint.sum(axis=0).astype(np.float64)
    union = ps.areas().astype(np.float64)[:, None] + gt_area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    running = np.maximum.accumulate(iou, axis=0)
    for i, k in enumerate(ks):
        kk = len(ps) if k is None else min(int(k), len(ps))
        if kk > 0:
            out[i] = running[kk - 1]
    return out


def summarise(best: np.ndarray) -> dict[str, Any]:
    """``{"recall@0.5", "recall@0.7", "abo", "n"}`` of best overlaps ``(N,)``."""
    n = int(best.size)
    rec = {f"recall@{t}": float((best >= t).mean()) if n else 0.0 for t in THRESHOLDS}
    return {**rec, "abo": float(best.mean()) if n else 0.0, "n": n}


def evaluate_recall(
    gt_json: str | os.PathLike[str],
    proposals_dir: str | os.PathLike[str],
    ks: Sequence[int | None] = (100, 500, 1000, None),
) -> dict[str, Any]:
    """Recall and ABO of stored proposals against COCO panoptic ground truth.

    Arguments:
        gt_json: COCO panoptic json; its PNGs are in the folder named like the json's stem
            beside it (``annotations/panoptic_val.json`` -> ``annotations/panoptic_val/``).
        proposals_dir: a proposal store (:class:`jtsm.proposals.store.ProposalStore`) holding
            a file for every image of the json.
        ks: proposal budgets for ``by_k`` (``None`` = all proposals).

    Returns:
        ``{"all" | "things" | "stuff": {"recall@0.5", "recall@0.7", "abo", "n"},
        "by_k": {k: {"all" | "things" | "stuff": {...}}}}`` with fractions in [0, 1], over all
        non-crowd segments of all images; the top-level groups use all proposals. In ``by_k``
        the key of ``None`` is ``"all"``.

    Raises:
        DataError: a missing/corrupt ground-truth or proposal file, or proposals made for an
            image of another size (the file is named).
    """
    from jtsm.evaluation.cocogt import load_panoptic_gt
    from jtsm.proposals.store import ProposalStore

    ds = load_panoptic_gt(gt_json)
    store = ProposalStore(proposals_dir)
    budgets: list[int | None] = list(dict.fromkeys(list(ks) + [None]))
    bests: list[np.ndarray] = []
    things: list[np.ndarray] = []
    for im in ds.images:
        ann = ds.annotations.get(int(im["id"]))
        if ann is None:
            continue
        pan = ds.read(int(im["id"]), check=False)
        segs = [s for s in pan.segments if not int(s.get("iscrowd", 0))]
        if not segs:
            continue
        ps = store.load(str(im["file_name"]), expect_size=pan.image_size)
        bests.append(best_overlaps(ps, pan.ids, [int(s["id"]) for s in segs], budgets))
        things.append(np.array([ds.categories.isthing(int(s["category_id"])) for s in segs]))
    best = np.concatenate(bests, axis=1) if bests else np.zeros((len(budgets), 0))
    is_thing = np.concatenate(things) if things else np.zeros(0, bool)

    def groups(row: np.ndarray) -> dict[str, Any]:
        return {
            "all": summarise(row),
            "things": summarise(row[is_thing]),
            "stuff": summarise(row[~is_thing]),
        }

    result: dict[str, Any] = groups(best[budgets.index(None)])
    result["by_k"] = {
        ("all" if k is None else int(k)): groups(best[budgets.index(k)]) for k in ks
    }
    return result
