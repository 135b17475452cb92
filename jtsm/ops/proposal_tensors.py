"""Proposals as torch tensors: what the pooling ops and the mining model consume.

:class:`ProposalTensors` holds a :class:`jtsm.structures.ProposalSet` as tensors (superpixel
map, CSR membership, boxes, scores), so a ``DataLoader`` worker can build it and the model can
move it to a device. Use :func:`collate_proposals` as (part of) the ``collate_fn``: proposal
counts differ between images, so they are never stacked.

The training loader builds them on the host (pinned for a CUDA model, :meth:`pinned`);
MoIPool plans its bins from the host tensors and the model moves only what it needs
(:meth:`to` copies without blocking). Nothing here reads a device tensor's values on the host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jtsm.ops.sync_counter import on_host
from jtsm.ops.transfer import pinned, to_device
from jtsm.structures import ProposalSet

__all__ = ["ProposalTensors", "collate_proposals"]


@dataclass
class ProposalTensors:
    """One image's segment proposals as tensors (the MCG representation).

    Attributes:
        superpixels: ``(H, W)`` int64 map of superpixel ids in ``[0, S)``.
        crow: ``(P + 1,)`` int64 CSR row pointers of the ``(P, S)`` membership matrix.
        col: ``(nnz,)`` int64 superpixel ids of each proposal, row after row.
        boxes: ``(P, 4)`` float32 XYXY boxes in pixels (exclusive right/bottom edge).
        scores: ``(P,)`` float32 proposal scores.
        num_superpixels: ``S``.
        sp_areas: ``(S,)`` int64 pixel count of each superpixel, once computed
            (:meth:`superpixel_areas`; the superpixel map's ``bincount``, which on a GPU reads
            the map's maximum on the host, so it is computed before the tensors move there).
    """

    superpixels: Tensor
    crow: Tensor
    col: Tensor
    boxes: Tensor
    scores: Tensor
    num_superpixels: int
    sp_areas: Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proposal_set(cls, proposals: ProposalSet) -> ProposalTensors:
        m = proposals.membership
        return cls(
            superpixels=torch.from_numpy(proposals.superpixels.astype(np.int64)),
            crow=torch.from_numpy(m.indptr.astype(np.int64)),
            col=torch.from_numpy(m.indices.astype(np.int64)),
            boxes=torch.from_numpy(np.ascontiguousarray(proposals.boxes, np.float32)),
            scores=torch.from_numpy(np.ascontiguousarray(proposals.scores, np.float32)),
            num_superpixels=int(proposals.num_superpixels),
        )

    def __len__(self) -> int:
        return int(self.crow.numel()) - 1

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.superpixels.shape[0]), int(self.superpixels.shape[1])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def to(self, device: torch.device | str) -> ProposalTensors:
        """The tensors on ``device`` (:func:`jtsm.ops.transfer.to_device`: from the host to a
        GPU without blocking); host tensors leaving the host get their superpixel areas
        first, on the host (a GPU's ``bincount`` would wait for the device)."""
        if torch.device(device) == self.device:
            return self
        if self.device.type == "cpu":
            self.superpixel_areas()
        return self._map(lambda t: to_device(t, device))

    def pinned(self, device: torch.device | str) -> ProposalTensors:
        """The tensors in page-locked memory when ``device`` is a GPU (the superpixel areas
        computed first), for copies that do not block; on a CPU ``self``."""
        if torch.device(device).type != "cuda":
            return self
        self.superpixel_areas()
        return self._map(lambda t: pinned(t, device))

    def _map(self, fn: Callable[[Tensor], Tensor]) -> ProposalTensors:
        return ProposalTensors(fn(self.superpixels), fn(self.crow), fn(self.col),
                               fn(self.boxes), fn(self.scores), self.num_superpixels,
                               None if self.sp_areas is None else fn(self.sp_areas))

    def members(self, start: int = 0, stop: int | None = None) -> tuple[Tensor, Tensor]:
        """Membership entries of proposals ``start .. stop-1``.

        Returns:
            ``owner`` ``(nnz,)`` proposal index relative to ``start`` and ``superpixel``
            ``(nnz,)`` superpixel id of each entry.
        """
        stop = len(self) if stop is None else stop
        if start == 0 and stop == len(self):  # all of them: sizes known without a host sync
            a, b = 0, int(self.col.numel())
        else:
            a, b = int(self.crow[start]), int(self.crow[stop])
        counts = self.crow[start + 1 : stop + 1] - self.crow[start:stop]
        owner = torch.repeat_interleave(torch.arange(stop - start, device=self.device), counts,
                                        output_size=b - a)
        return owner, self.col[a:b]

    def superpixel_areas(self) -> Tensor:
        """``(S,)`` int64 pixel count of each superpixel (computed once, then kept; proposals
        on the CPU are host tensors, the loader's)."""
        if self.sp_areas is None:
            with on_host() if self.superpixels.device.type == "cpu" else nullcontext():
                self.sp_areas = torch.bincount(self.superpixels.reshape(-1),
                                               minlength=self.num_superpixels)
        return self.sp_areas

    def areas(self) -> Tensor:
        """``(P,)`` int64 pixel area of each proposal."""
        owner, sp = self.members()
        out = torch.zeros(len(self), dtype=torch.int64, device=self.device)
        return out.index_add_(0, owner, self.superpixel_areas()[sp])

    def mask_iou(self, index: Tensor) -> Tensor:
        """Mask IoU ``(P, G)`` of every proposal with proposals ``index`` ``(G,)``.

        Exact, from the membership matrix and superpixel areas; no dense masks, and no value
        read on the host (the selected proposals' superpixels are found by comparing every
        membership entry's owner with ``index``: ``(G, nnz)``).
        """
        index = to_device(index, self.device)
        sp_area = self.superpixel_areas().double()
        g = index.numel()
        owner, sp = self.members()
        hit = owner[None, :] == index[:, None]  # (G, nnz)
        sel = torch.zeros(g, self.num_superpixels, dtype=torch.float64, device=self.device)
        sel.index_add_(1, sp, hit.double())  # 0/1: a proposal lists a superpixel once
        inter = torch.zeros(len(self), g, dtype=torch.float64, device=self.device)
        inter.index_add_(0, owner, sp_area[sp, None] * sel[:, sp].T)
        area = self.areas().double()
        union = area[:, None] + area[index][None, :] - inter
        return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))

    def masks(self, index: Sequence[int] | Tensor | None = None) -> Tensor:
        """``(k, H, W)`` bool dense masks (for tests and visualisation, a few at a time)."""
        idx = range(len(self)) if index is None else [int(i) for i in index]
        out = []
        for i in idx:
            lut = torch.zeros(self.num_superpixels, dtype=torch.bool, device=self.device)
            lut[self.col[int(self.crow[i]) : int(self.crow[i + 1])]] = True
            out.append(lut[self.superpixels])
        h, w = self.image_size
        return torch.stack(out) if out else torch.zeros(0, h, w, dtype=torch.bool)

    def as_dict(self) -> dict[str, Any]:
        return {
            "superpixels": self.superpixels,
            "crow": self.crow,
            "col": self.col,
            "boxes": self.boxes,
            "scores": self.scores,
            "num_superpixels": self.num_superpixels,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProposalTensors:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def collate_proposals(batch: Sequence[ProposalTensors]) -> list[ProposalTensors]:
    """``collate_fn`` part for proposals: a list, one entry per image (never stacked)."""
    return list(batch)
