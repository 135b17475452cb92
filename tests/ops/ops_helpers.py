"""Random superpixel maps and proposals, and slow reference loops for the pooling tests."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.structures import ProposalSet


def random_proposals(h: int, w: int, n_sp: int, n_prop: int, seed: int) -> ProposalTensors:
    """Voronoi superpixels; each proposal = a random superpixel plus some of its neighbours."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0, h, n_sp), rng.uniform(0, w, n_sp)
    yy, xx = np.mgrid[0:h, 0:w]
    d = (yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2
    spm = d.argmin(-1).astype(np.int32)
    ps = ProposalSet(spm, sp.csr_matrix(np.zeros((0, n_sp), bool)))
    # grow proposals over superpixel adjacency
    adj = np.zeros((n_sp, n_sp), bool)
    adj[spm[:, 1:].ravel(), spm[:, :-1].ravel()] = True
    adj[spm[1:, :].ravel(), spm[:-1, :].ravel()] = True
    adj |= adj.T
    member = np.zeros((n_prop, n_sp), bool)
    for p in range(n_prop):
        cur = {int(rng.integers(n_sp))}
        for _ in range(int(rng.integers(0, 6))):
            nb = np.nonzero(adj[list(cur)].any(0))[0]
            cur.add(int(rng.choice(nb)))
        member[p, list(cur)] = True
    ps = ProposalSet(spm, sp.csr_matrix(member), scores=rng.uniform(0, 1, n_prop))
    return ProposalTensors.from_proposal_set(ps)


def _c_round(v: float) -> int:
    """C's round: halves away from zero."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _real(dtype: torch.dtype) -> type:
    """The scalar type torchvision's kernels compute in for features of ``dtype``."""
    return np.float64 if dtype == torch.float64 else np.float32


def ref_cell_on(mask: torch.Tensor, hf: int, wf: int, scale: float,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Eq. 6 by brute force: pixel (y, x) lies in cell (round(y*s), round(x*s)), clipped to the
    map; a cell is on iff one of its pixels is in the mask."""
    t = _real(dtype)
    h, w = mask.shape
    on = torch.zeros(hf, wf, dtype=torch.bool)
    for y in range(h):
        i = min(max(_c_round(float(t(y) * t(scale))), 0), hf - 1)
        for x in range(w):
            j = min(max(_c_round(float(t(x) * t(scale))), 0), wf - 1)
            on[i, j] |= bool(mask[y, x])
    return on


def ref_pool(feat: torch.Tensor, box, on: torch.Tensor | None, ph: int, pw: int, scale: float):
    """RoIPool (torchvision's kernel, transcribed) / masked RoIPool of one exclusive-edge box
    by loops: ``(C, hf, wf)`` -> ``(C, ph, pw)``. The box's pixels are ``x0 .. x1-1``."""
    t = _real(feat.dtype)
    c, hf, wf = feat.shape
    x0, y0, x1, y1 = (t(float(v)) for v in box)
    x1, y1 = x1 - t(1), y1 - t(1)
    s = t(scale)
    c0, r0 = _c_round(float(x0 * s)), _c_round(float(y0 * s))
    c1, r1 = _c_round(float(x1 * s)), _c_round(float(y1 * s))
    bh = t(max(r1 - r0 + 1, 1)) / t(ph)
    bw = t(max(c1 - c0 + 1, 1)) / t(pw)
    rows = []
    for u in range(ph):
        cols = []
        for v in range(pw):
            hs = min(max(math.floor(t(u) * bh) + r0, 0), hf)
            he = min(max(math.ceil(t(u + 1) * bh) + r0, 0), hf)
            ws = min(max(math.floor(t(v) * bw) + c0, 0), wf)
            we = min(max(math.ceil(t(v + 1) * bw) + c0, 0), wf)
            vals = []
            for i in range(hs, he):
                for j in range(ws, we):
                    if on is None or on[i, j]:
                        vals.append(feat[:, i, j])
            cols.append(torch.stack(vals, 1).max(1).values if vals else feat.new_zeros(c))
        rows.append(torch.stack(cols, 1))
    return torch.stack(rows, 1)
