"""Test-time scoring of an image's proposals: scales and flips averaged (``--tta``).

Resizing and flipping keep the proposals' order (only the superpixel map changes), so the
scores of every pass line up proposal by proposal.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from jtsm.data.mining_dataset import resize_to_scale, to_tensor
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.structures import ProposalSet

__all__ = ["score_proposals"]


@torch.no_grad()
def score_proposals(
    model: nn.Module,
    image: np.ndarray,
    proposals: ProposalSet,
    scales: Sequence[int],
    max_size: int = 1333,
    flip: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Average the model's proposal and image scores over ``scales`` (and flips).

    Arguments:
        model: a mining model, ``model(image (1, 3, H, W), ProposalTensors)`` -> dict with
            ``scores`` ``(P, C)`` and ``image_scores`` ``(C,)``.
        image: ``(H, W, 3)`` uint8 RGB; proposals: its proposals at that size.
    Returns:
        ``scores`` ``(P, C)`` and ``image_scores`` ``(C,)``, float32 numpy arrays.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    acc_s: np.ndarray | None = None
    acc_y: np.ndarray | None = None
    passes = 0
    try:
        for short in scales:
            h, w = resize_to_scale(*image.shape[:2], int(short), max_size)
            img = image if (h, w) == image.shape[:2] else cv2.resize(
                image, (w, h), interpolation=cv2.INTER_LINEAR)
            ps = proposals if (h, w) == image.shape[:2] else proposals.resize(h, w)
            for flipped in ((False, True) if flip else (False,)):
                im = np.ascontiguousarray(img[:, ::-1]) if flipped else img
                pp = ps.hflip() if flipped else ps
                out = model(to_tensor(im)[None].to(device),
                            ProposalTensors.from_proposal_set(pp).to(device))
                s = out["scores"].float().cpu().numpy()
                y = out["image_scores"].float().cpu().numpy()
                acc_s = s if acc_s is None else acc_s + s
                acc_y = y if acc_y is None else acc_y + y
                passes += 1
    finally:
        model.train(was_training)
    assert acc_s is not None and acc_y is not None
    return acc_s / passes, acc_y / passes
