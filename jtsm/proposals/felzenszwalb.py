"""The simplest segment proposals: Felzenszwalb regions plus their adjacent pairs and triples.

One graph segmentation (Felzenszwalb & Huttenlocher 2004); its regions are the superpixels,
and the proposals are every region, every pair of adjacent regions and every connected triple
(a path ``a - b - c``). A proposal's score is the mean colour-histogram intersection over the
adjacent pairs it contains (1 for a single region), so merges of similar-looking regions rank
first. A baseline for the recall table, not a competitor of selective search.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import scipy.sparse as sp

from jtsm.proposals.features import adjacency, convert_colour, pixel_bins, region_histograms
from jtsm.proposals.overlay import felzenszwalb_segment
from jtsm.structures import ProposalSet

__all__ = ["felzenszwalb_proposals"]


def felzenszwalb_proposals(
    image: np.ndarray,
    k: float = 100,
    sigma: float = 0.8,
    min_size: int | None = None,
    space: str = "hsv",
    max_proposals: int | None = 2000,
) -> ProposalSet:
    """Regions, adjacent pairs and connected triples of one Felzenszwalb segmentation.

    Arguments:
        image: RGB ``uint8`` ``(H, W, 3)``.
        k, sigma, min_size: graph-segmentation parameters (``min_size`` defaults to ``k``).
        space: colour space of the segmentation and of the colour histograms.
        max_proposals: keep the best-scoring ones (``None``: all).

    Returns:
        a :class:`ProposalSet` on the segmentation's regions, sorted by score, deduplicated.
    """
    conv, ranges = convert_colour(np.ascontiguousarray(image), space)
    labels = felzenszwalb_segment(conv, k, sigma, min_size)
    r = int(labels.max()) + 1
    pb = pixel_bins(conv, ranges)
    colour = region_histograms(labels, r, pb)[:, : pb.colour_dims]
    edges = adjacency(labels)
    esim = np.minimum(colour[edges[:, 0]], colour[edges[:, 1]]).sum(axis=1).astype(np.float64)
    sim = {(int(a), int(b)): float(s) for (a, b), s in zip(edges, esim)}
    nbrs: list[list[int]] = [[] for _ in range(r)]
    for a, b in sim:
        nbrs[a].append(b)
        nbrs[b].append(a)

    def pair_sim(a: int, b: int) -> float | None:
        return sim.get((a, b) if a < b else (b, a))

    rows: list[tuple[int, ...]] = [(i,) for i in range(r)]
    scores: list[float] = [1.0] * r
    rows += [(int(a), int(b)) for a, b in edges]
    scores += esim.tolist()
    seen: set[tuple[int, int, int]] = set()
    for b in range(r):
        for a, c in combinations(sorted(nbrs[b]), 2):
            key = tuple(sorted((a, b, c)))
            if key in seen:
                continue
            seen.add(key)  # type: ignore[arg-type]
            s = [x for x in (pair_sim(a, b), pair_sim(b, c), pair_sim(a, c)) if x is not None]
            rows.append(key)
            scores.append(sum(s) / len(s))
    lengths = np.fromiter((len(t) for t in rows), np.int64, len(rows))
    indices = np.fromiter((i for t in rows for i in t), np.int64, int(lengths.sum()))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    member = sp.csr_matrix((np.ones(indices.size, bool), indices, indptr), shape=(len(rows), r))
    return ProposalSet(labels, member, np.asarray(scores, np.float32)).clean(max_proposals)
