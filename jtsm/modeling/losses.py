"""Losses: mining branch MIL (Eq. 2) and OICR refinement (Eq. 3-4); refinement branches
instance masks (Eq. 9) and semantic stuff maps (Eq. 10).

Class indices: ``0 .. C-1`` are the things and stuff classes (things first); refinement heads
have one more output, background, at index ``C`` (last).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["class_seeds", "instance_mask_loss", "mil_loss", "refinement_loss", "refinement_targets",
           "semantic_loss"]


def mil_loss(
    image_scores: Tensor, tags: Tensor, eps: float = 1e-6, reduction: str = "sum"
) -> Tensor:
    """Multi-label BCE of the image scores (Eq. 2).

    ``y`` is clamped to ``[eps, 1 - eps]`` first, so the loss is finite even for scores of
    exactly 0 or 1 (the most reported NaN in WSOD code); half precision is computed in float32
    (``1 - 1e-6`` rounds to 1 in float16).

    Arguments:
        image_scores: ``(C,)`` ``y_c = sum_p S_pc``. tags: ``(C,)`` 0/1.
        reduction: ``"sum"`` over classes as Eq. 2, or ``"mean"``.
    """
    if image_scores.dtype in (torch.float16, torch.bfloat16):
        image_scores = image_scores.float()
    y = image_scores.clamp(eps, 1.0 - eps)
    t = tags.to(y.dtype)
    loss = -(t * torch.log(y) + (1 - t) * torch.log(1 - y))
    return loss.sum() if reduction == "sum" else loss.mean()


@torch.no_grad()
def refinement_targets(
    prev_scores: Tensor,
    tags: Tensor,
    overlap: Callable[[Tensor], Tensor],
    iou_threshold: float = 0.5,
    classes: Tensor | None = None,
    stuff_seeds: int = 1,
    num_things: int | None = None,
    host_classes: list[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """OICR pseudo labels for one refinement head (Sec. 3.2).

    For each class ``c`` present (``tags[c] == 1``) the proposal with the highest previous
    score for ``c`` is a pseudo ground truth, weighted by that score. Every proposal takes the
    class of the pseudo ground truth it overlaps most (first on ties) if the overlap is
    ``>= iou_threshold``, else background; its weight is that pseudo ground truth's score.
    With ``stuff_seeds > 1`` a stuff class (index ``>= num_things``) has up to that many pseudo
    ground truths (:func:`class_seeds`): its other regions are not taught as background.

    Arguments:
        prev_scores: ``(P, C)`` MIL scores or ``(P, C + 1)`` previous head's probabilities.
        tags: ``(C,)`` 0/1 image labels.
        overlap: maps pseudo-gt proposal indices ``(G,)`` to ``(P, G)`` IoUs (box or mask).
        classes: ``(G,)`` the present classes, ``nonzero(tags)``, on ``prev_scores``' device,
            when the caller has them: found on the host from the loader's tags, they spare a
            GPU the ``nonzero`` (a host synchronisation) of every head.
        stuff_seeds, num_things: up to ``stuff_seeds`` pseudo ground truths for each class
            ``>= num_things`` (None: no class is known to be stuff); host_classes:
            ``classes`` as a host list, which spares the read of them that seeds need.
    Returns:
        ``labels`` ``(P,)`` int64 in ``[0, C]`` (``C`` = background) and ``weights`` ``(P,)``.
    """
    p = prev_scores.shape[0]
    c = tags.shape[0]
    if classes is None:
        classes = torch.nonzero(tags > 0).squeeze(1)
    labels = torch.full((p,), c, dtype=torch.int64, device=prev_scores.device)
    weights = prev_scores.new_zeros(p)
    if classes.numel() == 0 or p == 0:
        return labels, weights
    cls_scores = prev_scores[:, classes]  # (P, G)
    seeded: list[bool] = []  # the present classes that take several pseudo ground truths
    if stuff_seeds > 1 and num_things is not None:
        listed = classes.tolist() if host_classes is None else host_classes
        seeded = [c >= num_things for c in listed]
    if any(seeded):
        gt_idx, gt_w, gt_cls, chosen = class_seeds(cls_scores, classes, overlap, seeded,
                                                   stuff_seeds)
        iou = overlap(gt_idx).masked_fill(~chosen, -1.0)  # (P, S): S candidate seeds
    else:
        gt_w, gt_idx = cls_scores.max(0)
        gt_cls = classes
        iou = overlap(gt_idx)  # (P, G)
    best, arg = iou.max(1)
    labels = torch.where(best >= iou_threshold, gt_cls[arg], labels)
    weights = gt_w[arg]
    return labels, weights


#: candidates per class that further pseudo ground truths are chosen from (top scores)
SEED_CANDIDATES = 50
#: a further pseudo ground truth scores at least this fraction of its class's top score and
SEED_RATIO = 0.5
#: overlaps no pseudo ground truth of its class chosen before it above this
SEED_OVERLAP = 0.2


def class_seeds(cls_scores: Tensor, classes: Tensor, overlap: Callable[[Tensor], Tensor],
                seeded: list[bool], limit: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pseudo ground truths of the present classes: the top-scoring proposal of each and, for
    a class with ``seeded[j]``, up to ``limit`` in all: after its top proposal, greedily and
    best first, the candidates that score at least :data:`SEED_RATIO` x the top score and
    overlap no chosen one above :data:`SEED_OVERLAP` (the rule the mined segments are chosen
    by, ``segments.instance_ratio`` and ``segments.overlap``).

    Every step is a tensor operation of a fixed shape on the scores' device: nothing is read
    on the host (a GPU would wait for it). A seeded class returns all its
    :data:`SEED_CANDIDATES` best proposals, ``chosen`` saying which are its seeds.

    Arguments:
        cls_scores: ``(P, G)`` previous scores of the ``G`` present classes;
        classes: ``(G,)`` their class indices; overlap: as :func:`refinement_targets`';
        seeded: ``(G,)`` on the host.
    Returns:
        candidate proposal indices ``(S,)``, their scores ``(S,)``, classes ``(S,)`` and
        ``chosen`` ``(S,)`` bool, the classes in ``classes``' order, each one's best first.
    """
    p, g = cls_scores.shape
    k = min(p, SEED_CANDIDATES)
    many = [j for j in range(g) if seeded[j]]
    top_w, top_idx = cls_scores[:, many].topk(k, dim=0)  # (k, M), best first
    idx = top_idx.T  # (M, k)
    among = torch.stack([overlap(idx[m])[idx[m]] for m in range(len(many))])  # (M, k, k)
    ok = top_w.T >= SEED_RATIO * top_w[:1].T  # (M, k): scores at least the ratio of the top
    chosen = torch.zeros_like(ok)
    chosen[:, 0] = True
    blocked = among[:, 0] > SEED_OVERLAP  # (M, k): overlaps a chosen one
    for _ in range(limit - 1):  # each round takes every class's best free candidate
        free = ok & ~chosen & ~blocked
        first = free.cumsum(1).eq(1) & free  # (M, k): the best free candidate, if any
        chosen |= first
        blocked |= ((among > SEED_OVERLAP) & first[:, :, None]).any(1)
    best_w, best_idx = cls_scores.max(0)
    parts = {j: m for m, j in enumerate(many)}
    out_i, out_w, out_c, out_ok = [], [], [], []
    for j in range(g):
        if j in parts:
            m = parts[j]
            out_i.append(idx[m])
            out_w.append(top_w[:, m])
            out_c.append(classes[j].expand(k))
            out_ok.append(chosen[m])
        else:
            out_i.append(best_idx[j:j + 1])
            out_w.append(best_w[j:j + 1])
            out_c.append(classes[j:j + 1])
            out_ok.append(torch.ones(1, dtype=torch.bool, device=chosen.device))
    return torch.cat(out_i), torch.cat(out_w), torch.cat(out_c), torch.cat(out_ok)


def refinement_loss(logits: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """Weighted softmax cross-entropy (Eq. 3), averaged over proposals as OICR does.

    ``-(1/P) sum_p w_p log softmax(logits_p)[labels_p]``.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (weights * ce).mean()


def instance_mask_loss(logits: Tensor, classes: Tensor, targets: Tensor,
                       weights: Tensor) -> Tensor:
    """Eq. 9: BCE of the class-specific mask of each box's pseudo class, weighted by the
    class's image-level score.

    Arguments:
        logits: ``(K, T, M, M)`` mask logits of ``K`` boxes over ``T`` thing classes.
        classes: ``(K,)`` pseudo class of each box (thing index); only its mask is trained.
        targets: ``(K, M, M)`` pseudo masks in ``[0, 1]``; weights: ``(K,)``.
    Returns:
        ``sum_k w_k mean_pixels BCE_k / K`` (0 with no boxes, still in the graph).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0
    picked = logits[torch.arange(logits.shape[0], device=logits.device), classes]
    bce = F.binary_cross_entropy_with_logits(picked, targets.to(picked.dtype),
                                             reduction="none").mean((1, 2))
    return (weights.to(bce.dtype) * bce).mean()


def semantic_loss(logits: Tensor, target: Tensor, ignore_index: int = -1) -> Tensor:
    """Eq. 10: per-pixel cross-entropy of the stuff logits against the pseudo stuff map.

    Arguments:
        logits: ``(1, S, H, W)`` at image resolution; target: ``(H, W)`` int64 stuff index,
            ``ignore_index`` where no stuff label is given (things, void).
    Returns:
        the mean over the labelled pixels, 0 (in the graph) when there is none. Computed as
        the sum over them divided by their count (at least 1), which is the mean's own
        arithmetic, so that no branch reads a value on the host (a GPU would wait for it).
    """
    total = F.cross_entropy(logits, target[None], ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp(min=1)
