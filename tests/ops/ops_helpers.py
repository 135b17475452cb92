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


def ref_cell_on(mask: torch.Tensor, hf: int, wf: int, s: float) -> torch.Tensor:
    """Eq. 6 by brute force: cell (i, j) on iff its pixel footprint meets the mask."""
    h, w = mask.shape
    on = torch.zeros(hf, wf, dtype=torch.bool)
    for i in range(hf):
        for j in range(wf):
            r0, r1 = min(math.floor(i * s), h), min(math.ceil((i + 1) * s), h)
            c0, c1 = min(math.floor(j * s), w), min(math.ceil((j + 1) * s), w)
            on[i, j] = bool(mask[r0:r1, c0:c1].any())
    return on


def ref_pool(feat: torch.Tensor, box, on: torch.Tensor | None, ph: int, pw: int, scale: float):
    """RoIPool / masked RoIPool of one box by loops: ``(C, hf, wf)`` -> ``(C, ph, pw)``."""
    c, hf, wf = feat.shape
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, r0 = math.floor(x0 * scale + 0.5), math.floor(y0 * scale + 0.5)
    c1 = max(math.floor(x1 * scale + 0.5), c0 + 1)
    r1 = max(math.floor(y1 * scale + 0.5), r0 + 1)
    hb, wb = r1 - r0, c1 - c0
    rows = []
    for u in range(ph):
        cols = []
        for v in range(pw):
            hs = min(max(r0 + (hb * u) // ph, 0), hf)
            he = min(max(r0 + -((-hb * (u + 1)) // ph), 0), hf)
            ws = min(max(c0 + (wb * v) // pw, 0), wf)
            we = min(max(c0 + -((-wb * (v + 1)) // pw), 0), wf)
            vals = []
            for i in range(hs, he):
                for j in range(ws, we):
                    if on is None or on[i, j]:
                        vals.append(feat[:, i, j])
            cols.append(torch.stack(vals, 1).max(1).values if vals else feat.new_zeros(c))
        rows.append(torch.stack(cols, 1))
    return torch.stack(rows, 1)
