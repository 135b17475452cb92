"""Hierarchical grouping (Uijlings et al., IJCV 2013, Algorithm 1), keeping every region's leaves.

Starting from an initial segmentation into ``R`` regions, the two most similar neighbours are
merged until one region remains. Every merged region is kept as a set of initial regions
(a node of the merge tree), so its mask is exact. Node ``i < R`` is initial region ``i``; the
merge number ``j`` creates node ``R + j``.

Similarity (Eq. 1-5): ``s = a_c s_colour + a_t s_texture + a_s s_size + a_f s_fill``, with
histogram intersection for colour and texture, ``s_size = 1 - (|a| + |b|) / |im|`` and
``s_fill = 1 - (|BB_ab| - |a| - |b|) / |im|``. The merge loop keeps histograms in one numpy
array, neighbours in sets and candidate pairs in a heap (stale entries skipped lazily), and
computes the similarities of a new region to all its neighbours with one vectorised call.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

__all__ = ["Hierarchy", "group"]


@dataclass(frozen=True)
class Hierarchy:
    """A merge tree over ``R`` initial regions.

    Attributes:
        children: ``(M, 2)`` int64, the two nodes merged into node ``R + j``.
        n_leaves: number of initial regions ``R``.
        order: ``(R,)`` leaves in depth-first order: every node's leaves are the contiguous
            slice ``order[start[n] : start[n] + count[n]]``.
        start: ``(R + M,)`` int64 first position of each node in ``order``.
        count: ``(R + M,)`` int64 number of leaves of each node.
        boxes: ``(R + M, 4)`` float64 XYXY box of each node (exclusive right/bottom), or
            ``None`` when built without boxes.
    """

    children: np.ndarray
    n_leaves: int
    order: np.ndarray
    start: np.ndarray
    count: np.ndarray
    boxes: np.ndarray | None = None

    @property
    def n_nodes(self) -> int:
        return self.n_leaves + len(self.children)

    def leaves(self, node: int) -> np.ndarray:
        """Initial regions of ``node`` (``(k,)`` int64, DFS order)."""
        s = int(self.start[node])
        return self.order[s : s + int(self.count[node])]

    @classmethod
    def from_children(
        cls, children: np.ndarray, n_leaves: int, boxes: np.ndarray | None = None
    ) -> Hierarchy:
        """Leaf order, start and count of every node from the merge list."""
        children = np.asarray(children, np.int64).reshape(-1, 2)
        n = n_leaves + len(children)
        count = np.ones(n, np.int64)
        ch = children.tolist()
        cnt = count.tolist()
        for j, (a, b) in enumerate(ch):
            cnt[n_leaves + j] = cnt[a] + cnt[b]
        start = [0] * n
        is_child = np.zeros(n, bool)
        if len(children):
            is_child[children.reshape(-1)] = True
        offset = 0
        for r in np.nonzero(~is_child)[0].tolist():  # roots (one, unless the graph is split)
            start[r] = offset
            offset += cnt[r]
        for j in range(len(ch) - 1, -1, -1):  # parents before children
            a, b = ch[j]
            s = start[n_leaves + j]
            start[a] = s
            start[b] = s + cnt[a]
        start_arr = np.asarray(start, np.int64)
        order = np.empty(n_leaves, np.int64)
        order[start_arr[:n_leaves]] = np.arange(n_leaves)
        return cls(children, n_leaves, order, start_arr, np.asarray(cnt, np.int64), boxes)


def group(
    hist: np.ndarray,
    sizes: np.ndarray,
    boxes: np.ndarray,
    edges: np.ndarray,
    image_area: float,
    use_size: bool = True,
    use_fill: bool = True,
) -> Hierarchy:
    """Greedy hierarchical grouping.

    Arguments:
        hist: ``(R, D)`` float32 region histograms (the colour and/or texture parts in use,
            each part summing to 1, so their intersection adds ``s_colour + s_texture``).
            ``D = 0`` switches the histogram terms off.
        sizes: ``(R,)`` pixel counts.
        boxes: ``(R, 4)`` XYXY boxes (exclusive right/bottom).
        edges: ``(E, 2)`` pairs of adjacent regions.
        image_area: ``H * W``.
        use_size, use_fill: include ``s_size`` / ``s_fill``.

    Returns:
        the :class:`Hierarchy` of the ``R - 1`` merges (fewer if the graph is not connected).
    """
    r = int(sizes.shape[0])
    n = max(2 * r - 1, 1)
    d = hist.shape[1]
    h = np.zeros((n, d), np.float32)
    h[:r] = hist
    size = np.zeros(n, np.float64)
    size[:r] = sizes
    box = np.zeros((n, 4), np.float64)
    box[:r] = boxes
    inv_area = 1.0 / float(image_area)

    def sim(a: np.ndarray, b: int | np.ndarray) -> np.ndarray:
        s = np.zeros(len(a), np.float64)
        if d:
            s += np.minimum(h[a], h[b]).sum(axis=1)
        if use_size:
            s += 1.0 - (size[a] + size[b]) * inv_area
        if use_fill:
            ba = box[a]
            bb = box[b]
            bw = np.maximum(ba[:, 2], bb[..., 2]) - np.minimum(ba[:, 0], bb[..., 0])
            bh = np.maximum(ba[:, 3], bb[..., 3]) - np.minimum(ba[:, 1], bb[..., 1])
            s += 1.0 - (bw * bh - size[a] - size[b]) * inv_area
        return s

    nbrs: list[set[int] | None] = [set() for _ in range(r)] + [None] * (n - r)
    if len(edges):
        ea = edges[:, 0].astype(np.int64)
        eb = edges[:, 1].astype(np.int64)
        for a, b in zip(ea.tolist(), eb.tolist()):
            nbrs[a].add(b)  # type: ignore[union-attr]
            nbrs[b].add(a)  # type: ignore[union-attr]
        s0 = sim(ea, eb)
        heap = list(zip((-s0).tolist(), ea.tolist(), eb.tolist()))
        heapq.heapify(heap)
    else:
        heap = []
    alive = [True] * r + [False] * (n - r)
    children: list[tuple[int, int]] = []
    t = r
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        _, a, b = pop(heap)
        if not (alive[a] and alive[b]):
            continue
        alive[a] = alive[b] = False
        sa, sb = size[a], size[b]
        st = sa + sb
        h[t] = (h[a] * (sa / st)) + (h[b] * (sb / st))
        size[t] = st
        ba, bb = box[a], box[b]
        box[t] = (min(ba[0], bb[0]), min(ba[1], bb[1]), max(ba[2], bb[2]), max(ba[3], bb[3]))
        na, nb = nbrs[a], nbrs[b]
        assert na is not None and nb is not None
        nt = na | nb
        nt.discard(a)
        nt.discard(b)
        for k in nt:
            nk = nbrs[k]
            nk.discard(a)  # type: ignore[union-attr]
            nk.discard(b)  # type: ignore[union-attr]
            nk.add(t)  # type: ignore[union-attr]
        nbrs[t] = nt
        nbrs[a] = nbrs[b] = None
        children.append((a, b))
        alive[t] = True
        if nt:
            ks = np.fromiter(nt, np.int64, len(nt))
            for k, s in zip(ks.tolist(), sim(ks, t).tolist()):
                push(heap, (-s, k, t))
        t += 1
    m = len(children)
    return Hierarchy.from_children(np.asarray(children, np.int64).reshape(-1, 2), r, box[: r + m])
