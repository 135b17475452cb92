"""Benchmark inputs with segment proposals shaped like real ones, without a proposal method.

A photo bundled with scikit-image is resized to a VOC original's size (375 x 500), cut into
superpixels by scikit-image's Felzenszwalb segmentation, and each proposal is a union of
neighbouring superpixels grown from a random seed region until it reaches a target area. The
target areas follow a log-normal law fitted to what jtsm's selective search (``fast``, top
2000) gives on these photos: median 1.2 % of the image, one decade of spread, so most
proposals are small and a tenth cover more than 15 %. The superpixel map is then resized to
the training scale (nearest neighbour), as a VOC image and its proposals are at training time.

On an 800 x 1066 image at stride 16, selective search's proposals turn on 167-239 feature cells
each on average (four photos); random rectangles of 1-7 cells of a 24 px grid turn on about 37,
5-6x fewer, and make MoIPool's work look smaller than it is. This generator stays within
a factor of 1.5 of selective search (``tests/benchmarks/test_realistic_proposals.py``).

Needs only NumPy, SciPy, OpenCV (core) and scikit-image: no opencv-contrib.

    from realistic_proposals import realistic_proposals  # benchmarks/ (on sys.path)
    image, props = realistic_proposals(800, 1066, 2000, seed=0)
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import scipy.sparse as sp
import skimage.data
from skimage.segmentation import felzenszwalb

from jtsm.structures import ProposalSet

#: scikit-image's bundled colour photos (no download); item ``seed % 4`` is used.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
#: The size proposals are computed at: a VOC original (``(height, width)``).
BASE = (375, 500)
#: log10 of the target area fraction: mean and standard deviation (fitted, see the module).
LOG_AREA = (-2.2, 1.0)


def photo(name: str, height: int, width: int) -> np.ndarray:
    """Photo ``name`` of :data:`PHOTOS` as RGB ``uint8`` ``(height, width, 3)``."""
    img = getattr(skimage.data, name)()
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def superpixel_adjacency(labels: np.ndarray, n: int) -> sp.csr_matrix:
    """``(n, n)`` bool CSR: superpixels that touch horizontally or vertically."""
    a = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    b = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    keep = a != b
    m = sp.csr_matrix((np.ones(int(keep.sum()), bool), (a[keep], b[keep])), shape=(n, n))
    return (m + m.T).tocsr()


def grow_unions(labels: np.ndarray, n: int, rng: np.random.Generator,
                log_area: tuple[float, float] = LOG_AREA) -> sp.csr_matrix:
    """``(P, S)`` bool membership of up to ``n`` distinct unions of neighbouring superpixels.

    Each starts at a random superpixel and adds a random neighbour of the region until its
    area reaches a fraction ``10 ** N(*log_area)`` (at most 1) of the image."""
    s = int(labels.max()) + 1
    area = np.bincount(labels.ravel(), minlength=s).astype(np.float64) / labels.size
    adj = superpixel_adjacency(labels, s)
    seen: set[bytes] = set()
    rows: list[np.ndarray] = []
    for _ in range(20 * n):
        if len(rows) == n:
            break
        target = min(1.0, 10.0 ** rng.normal(*log_area))
        start = int(rng.integers(s))
        region, frontier, covered = {start}, set(), area[start]
        frontier.update(adj.indices[adj.indptr[start]: adj.indptr[start + 1]].tolist())
        while covered < target and frontier:
            k = list(frontier)[int(rng.integers(len(frontier)))]
            frontier.discard(k)
            if covered + area[k] > 2 * target:  # a big region (sky, wall) it would not reach
                continue
            region.add(k)
            covered += area[k]
            frontier.update(j for j in adj.indices[adj.indptr[k]: adj.indptr[k + 1]].tolist()
                            if j not in region)
        cells = np.fromiter(sorted(region), np.int64, len(region))
        key = cells.tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(cells)
    lengths = np.fromiter((r.size for r in rows), np.int64, len(rows))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(indices.size, bool), indices, indptr), shape=(len(rows), s))


@functools.lru_cache(maxsize=32)
def base_proposals(n: int, seed: int = 0, base: tuple[int, int] = BASE) -> ProposalSet:
    """``n`` proposals on photo ``PHOTOS[seed % 4]`` at size ``base`` (see the module).

    Returns:
        a :class:`ProposalSet` of ``n`` distinct proposals (fewer only if the photo has too few
        superpixels) on a ``base`` superpixel map, scores random and sorted, highest first.
        Cached: treat it as read-only (:meth:`ProposalSet.resize` returns a new one).
    """
    rng = np.random.default_rng(seed)
    labels = felzenszwalb(photo(PHOTOS[seed % len(PHOTOS)], *base), scale=50, sigma=0.8,
                          min_size=10).astype(np.int32)
    member = grow_unions(labels, n, rng)
    scores = np.sort(rng.random(member.shape[0]).astype(np.float32))[::-1].copy()
    return ProposalSet(labels, member, scores)


def realistic_proposals(height: int, width: int, n: int, seed: int = 0,
                        base: tuple[int, int] = BASE) -> tuple[np.ndarray, ProposalSet]:
    """The photo at ``(height, width)`` (RGB ``uint8`` ``(height, width, 3)``) and
    :func:`base_proposals` resized to it (nearest neighbour, empty ones dropped)."""
    ps = base_proposals(n, seed, tuple(base))
    if (height, width) != tuple(base):
        ps = ps.resize(height, width).drop_empty()
    return photo(PHOTOS[seed % len(PHOTOS)], height, width), ps


def on_cells(ps: ProposalSet, stride: int) -> np.ndarray:
    """Feature cells each proposal turns on at ``stride`` (MoIPool's Eq. 6): ``(P,)`` int64."""
    import torch

    from jtsm.ops.moi_pool import cell_on, superpixel_cell_incidence
    from jtsm.ops.proposal_tensors import ProposalTensors

    pt = ProposalTensors.from_proposal_set(ps)
    h, w = ps.superpixels.shape
    hf, wf = -(-h // stride), -(-w // stride)
    inc = superpixel_cell_incidence(pt.superpixels, pt.num_superpixels, (hf, wf), 1 / stride)
    with torch.no_grad():
        return cell_on(pt, inc, 0, len(pt), hf * wf).sum(1).numpy().astype(np.int64)
