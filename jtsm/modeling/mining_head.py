"""Panoptic mining head: two FC layers, the WSDDN MIL head (Eq. 2), OICR refinement heads.

Input is pooled proposal features ``(P, C_feat, ph, pw)`` (from any pooler of
:mod:`jtsm.modeling.pooling`); the head works on one image at a time. Its linear layers run in
the model's precision (bfloat16 autocast with ``bf16``, :mod:`jtsm.modeling.precision`); their
logits are cast to float32 before the softmaxes, so every output is float32.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jtsm.modeling.precision import autocast

__all__ = ["MiningHead"]


class MiningHead(nn.Module):
    """FC-ReLU-dropout x2, then MIL (two streams) and ``num_refine`` refinement heads.

    Arguments:
        in_features: ``C_feat * ph * pw``.
        num_classes: things + stuff (``C``).
        hidden: FC width (4096 in the paper; 256-512 on CPU).
        num_refine: ``n_r`` (Eq. 4); 0 allowed.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int = 4096,
        num_refine: int = 4,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.mil_cls = nn.Linear(hidden, num_classes)  # S^C
        self.mil_det = nn.Linear(hidden, num_classes)  # S^D
        self.refine = nn.ModuleList(nn.Linear(hidden, num_classes + 1) for _ in range(num_refine))
        for m in [self.mil_cls, self.mil_det, *self.refine]:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, pooled: Tensor, precision: str = "fp32"
                ) -> dict[str, Tensor | list[Tensor]]:
        """Score one image's proposals: ``pooled`` ``(P, C_feat, ph, pw)`` (or ``(P, F)``), any
        float dtype.

        The FC layers, S^C, S^D and the refinement heads' linear layers run under
        ``precision``'s autocast (``fp32``, ``bf16``, ``auto``: the backbone's); every output
        is float32 (the logits are cast before the softmaxes and the losses).

        Returns:
            ``mil_scores`` ``(P, C)``: ``S = softmax_c(S^C) * softmax_p(S^D)`` (Eq. 2);
            ``image_scores`` ``(C,)``: ``y_c = sum_p S_pc``;
            ``refine_logits``: ``n_r`` tensors ``(P, C + 1)`` (background last);
            ``refine_probs``: their softmaxes;
            ``scores`` ``(P, C)``: test-time scores, the refinement heads' probabilities
            averaged (class part), or the MIL scores when ``n_r == 0``.
        """
        # flatten in (ph, pw, C) order: free for our poolers, whose outputs are (P, C, ph, pw)
        # views of channels-last tensors (no copy forward, none of the gradient backward)
        if pooled.dim() == 4:
            pooled = pooled.permute(0, 2, 3, 1)
        with autocast(precision, pooled.device):
            x = self.fc(pooled.reshape(pooled.shape[0], -1))
            cls, det = self.mil_cls(x).float(), self.mil_det(x).float()
            logits = [h(x).float() for h in self.refine]
        s = torch.softmax(cls, 1) * torch.softmax(det, 0)
        probs = [torch.softmax(z, 1) for z in logits]
        scores = torch.stack(probs).mean(0)[:, : self.num_classes] if probs else s
        return {
            "mil_scores": s,
            "image_scores": s.sum(0),
            "refine_logits": logits,
            "refine_probs": probs,
            "scores": scores,
        }
