"""Selective search that keeps masks (Uijlings et al., IJCV 2013).

Diversification (section 3.3): every strategy is a (colour space, Felzenszwalb ``k``,
similarity) triple; it segments the image in that colour space with that ``k`` and groups the
regions hierarchically (:func:`jtsm.proposals.grouping.group`). The strategy sets of the paper:

- ``fast``: colour spaces HSV, Lab; ``k`` 50, 100; similarities C+T+S+F, T+S+F (8 hierarchies);
- ``quality``: HSV, Lab, rgI, H, I; ``k`` 50, 100, 150, 300; C+T+S+F, T+S+F, F, S (80);
- ``single``: HSV, ``k`` 100, C+T+S+F (one hierarchy).

All segmentations are overlaid into one common superpixel map (cells = unique label tuples), so
every region of every hierarchy is an exact set of cells. Ranking (section 3.4): in each
hierarchy the node created last (the whole image) has position 1, the one before it 2, ...; the
position is multiplied by a uniform random number and proposals are sorted by that value, lowest
first. Duplicates (same mask, from any hierarchy) keep their best-ranked copy. The output score
is ``1 / (1 + value)``, in ``(0, 1]``, decreasing with rank.

Dense masks are never built: a node's leaves form a contiguous slice of its hierarchy's
depth-first leaf order, and so do its cells once cells are sorted by their leaf's position, so
membership rows and duplicate signatures (prefix sums of random 64-bit cell codes) are computed
for all nodes with array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from jtsm.proposals.features import (
    adjacency,
    convert_colour,
    pixel_bins,
    region_boxes,
    region_histograms_many,
)
from jtsm.proposals.grouping import Hierarchy, group
from jtsm.proposals.overlay import felzenszwalb_segment, overlay
from jtsm.structures import ProposalSet

__all__ = ["STRATEGY_SETS", "StrategySet", "selective_search"]

SIMILARITIES = ("CTSF", "TSF", "F", "S", "C", "T", "CT", "CS", "CF", "TS", "SF")


@dataclass(frozen=True)
class StrategySet:
    """Colour spaces x Felzenszwalb ``k`` values x similarity measures (letters C, T, S, F)."""

    spaces: tuple[str, ...]
    ks: tuple[float, ...]
    similarities: tuple[str, ...]
    sigma: float = 0.8


STRATEGY_SETS: dict[str, StrategySet] = {
    "single": StrategySet(("hsv",), (100,), ("CTSF",)),
    "fast": StrategySet(("hsv", "lab"), (50, 100), ("CTSF", "TSF")),
    "quality": StrategySet(
        ("hsv", "lab", "rgi", "h", "i"), (50, 100, 150, 300), ("CTSF", "TSF", "F", "S")
    ),
}


@dataclass
class _Run:
    """One hierarchy and how its nodes map onto overlay cells."""

    seg: int
    tree: Hierarchy


def _check_similarity(s: str) -> str:
    s = s.upper()
    if not s or set(s) - set("CTSF") or len(set(s)) != len(s):
        raise ValueError(f"similarity {s!r} must combine the letters C, T, S, F (e.g. 'CTSF')")
    return s


def _hierarchies(
    image: np.ndarray, strategies: StrategySet
) -> tuple[list[np.ndarray], list[_Run]]:
    """Segment and group with every strategy -> (label maps, hierarchies)."""
    h, w = image.shape[:2]
    sims = [_check_similarity(s) for s in strategies.similarities]
    need_hist = any(("C" in s or "T" in s) for s in sims)
    label_maps: list[np.ndarray] = []
    runs: list[_Run] = []
    for space in strategies.spaces:
        conv, ranges = convert_colour(image, space)
        pb = pixel_bins(conv, ranges) if need_hist else None
        maps = [felzenszwalb_segment(conv, k, strategies.sigma) for k in strategies.ks]
        hists = region_histograms_many(maps, pb) if pb is not None else [None] * len(maps)
        for labels, hist in zip(maps, hists):
            seg = len(label_maps)
            label_maps.append(labels)
            r = int(labels.max()) + 1
            sizes = np.bincount(labels.reshape(-1), minlength=r)
            boxes = region_boxes(labels, r)
            edges = adjacency(labels)
            for s in sims:
                cols = []
                if "C" in s and hist is not None and pb is not None:
                    cols.append(hist[:, : pb.colour_dims])
                if "T" in s and hist is not None and pb is not None:
                    cols.append(hist[:, pb.colour_dims :])
                feats = (
                    np.ascontiguousarray(np.concatenate(cols, axis=1))
                    if cols
                    else np.zeros((r, 0), np.float32)
                )
                tree = group(feats, sizes, boxes, edges, h * w, "S" in s, "F" in s)
                runs.append(_Run(seg, tree))
    return label_maps, runs


def _slices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for all pairs, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offs = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(offs - starts, lengths)


def selective_search(
    image: np.ndarray,
    mode: str | StrategySet = "fast",
    max_proposals: int | None = 2000,
    seed: int = 0,
) -> ProposalSet:
    """Selective search segment proposals of an RGB ``uint8`` image ``(H, W, 3)``.

    Arguments:
        image: RGB ``uint8`` ``(H, W, 3)``.
        mode: ``"fast"``, ``"quality"``, ``"single"`` or a :class:`StrategySet`.
        max_proposals: keep the best-ranked ones (``None``: all distinct regions).
        seed: seed of the randomised ranking.

    Returns:
        a :class:`ProposalSet` sorted by score, without duplicates or empty masks, whose
        superpixels are the cells of the overlaid initial segmentations (merged where no
        kept proposal separates them).
    """
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if isinstance(mode, str) and mode not in STRATEGY_SETS:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(STRATEGY_SETS)})")
    strategies = STRATEGY_SETS[mode] if isinstance(mode, str) else mode
    label_maps, runs = _hierarchies(image, strategies)
    cells, cell_labels = overlay(label_maps)
    n_cells = cell_labels.shape[1]
    rng = np.random.default_rng(seed)
    code = rng.integers(0, np.iinfo(np.int64).max, size=n_cells, dtype=np.int64).astype(np.uint64)

    cell_orders, values, sigs, cstarts, cends, owners, boxes = [], [], [], [], [], [], []
    for h, run in enumerate(runs):
        tree = run.tree
        lab = cell_labels[run.seg]
        pos = np.empty(tree.n_leaves, np.int64)
        pos[tree.order] = np.arange(tree.n_leaves)
        corder = np.argsort(pos[lab], kind="stable")
        per_leaf = np.bincount(lab, minlength=tree.n_leaves)[tree.order]
        cum = np.concatenate([[0], np.cumsum(per_leaf)])
        cs = cum[tree.start]
        ce = cum[tree.start + tree.count]
        hc = np.concatenate([[np.uint64(0)], np.cumsum(code[corder], dtype=np.uint64)])
        with np.errstate(over="ignore"):
            sigs.append(hc[ce] - hc[cs])
        n = tree.n_nodes
        rank = n - np.arange(n, dtype=np.float64)  # last-created (whole image) = 1
        values.append(rank * rng.random(n))
        cell_orders.append(corder)
        cstarts.append(cs)
        cends.append(ce)
        owners.append(np.full(n, h, np.int64))
        assert tree.boxes is not None
        boxes.append(tree.boxes)
    value = np.concatenate(values)
    sig = np.concatenate(sigs)
    cstart = np.concatenate(cstarts)
    cend = np.concatenate(cends)
    owner = np.concatenate(owners)

    by_value = np.argsort(value, kind="stable")
    _, first = np.unique(sig[by_value], return_index=True)  # best-ranked copy of each mask
    chosen = by_value[np.sort(first)]
    chosen = chosen[cend[chosen] > cstart[chosen]]
    if max_proposals is not None:
        chosen = chosen[: max(int(max_proposals), 0)]
    groups, member = _membership(
        cell_orders, owner[chosen], cstart[chosen], cend[chosen], n_cells, rng
    )
    scores = (1.0 / (1.0 + value[chosen])).astype(np.float32)
    box = np.concatenate(boxes)[chosen].astype(np.float32)
    return ProposalSet(groups[cells].astype(np.int32), member, scores, box)


def _membership(
    cell_orders: list[np.ndarray],
    owner: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    n_cells: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Membership of the chosen regions over merged cells, never over the raw overlay cells.

    Region ``i`` covers the cells ``cell_orders[owner[i]][start[i]:end[i]]``. Cells that no
    region tells apart are merged first (a cell's signature is the wrapping sum of random
    64-bit codes of the regions covering it, accumulated per hierarchy with a difference
    array), so the matrix is built at its final, smaller size. Groups are numbered along the
    first hierarchy's leaf order, so that its regions are runs of consecutive ids.

    Returns:
        ``(group of every overlay cell (C,), membership (P, G) CSR bool)``.
    """
    p = len(owner)
    code = rng.integers(0, np.iinfo(np.int64).max, size=p, dtype=np.int64).astype(np.uint64)
    cell_sig = np.zeros(n_cells, np.uint64)
    with np.errstate(over="ignore"):
        for h, corder in enumerate(cell_orders):
            sel = np.nonzero(owner == h)[0]
            if not len(sel):
                continue
            diff = np.zeros(n_cells + 1, np.uint64)
            np.add.at(diff, start[sel], code[sel])
            np.add.at(diff, end[sel], np.uint64(0) - code[sel])
            cell_sig[corder] += np.cumsum(diff[:-1], dtype=np.uint64)
    along = cell_orders[0]
    _, first, inverse = np.unique(cell_sig[along], return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    groups = np.empty(n_cells, np.int64)
    groups[along] = rank[inverse.reshape(-1)]
    n_groups = len(first)
    rep = np.empty(n_groups, np.int64)  # one cell per group
    rep[groups[along[::-1]]] = along[::-1]
    # a region covers a group iff it covers its representative: a slice of the groups sorted
    # by their representative's position in the region's hierarchy
    sorted_groups, a_all, b_all = [], np.zeros(p, np.int64), np.zeros(p, np.int64)
    base = 0
    for h, corder in enumerate(cell_orders):
        pos = np.empty(n_cells, np.int64)
        pos[corder] = np.arange(n_cells)
        rp = pos[rep]
        order = np.argsort(rp, kind="stable")
        sel = np.nonzero(owner == h)[0]
        a_all[sel] = np.searchsorted(rp[order], start[sel]) + base
        b_all[sel] = np.searchsorted(rp[order], end[sel]) + base
        sorted_groups.append(order)
        base += n_groups
    lengths = b_all - a_all
    indices = np.concatenate(sorted_groups)[_slices(a_all, lengths)]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    member = sp.csr_matrix(
        (np.ones(len(indices), bool), indices, indptr), shape=(p, n_groups)
    )
    member.sort_indices()
    return groups, member
