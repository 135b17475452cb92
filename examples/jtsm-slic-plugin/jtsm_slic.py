"""A complete third-party jtsm plugin: SLIC superpixels at several scales, plus adjacent pairs.

Install it (``pip install -e examples/jtsm-slic-plugin``) and ``jtsm plugins`` lists it;
``jtsm proposals --method slic --opt scales=50,150,400`` uses it.

Every scale's SLIC segmentation has its own labels, so all of them are overlaid into one
common superpixel map (:func:`jtsm.proposals.overlay.overlay`): each SLIC segment is then an
exact set of overlay cells, which is what a :class:`jtsm.structures.ProposalSet` stores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from jtsm.hookspecs import hookimpl
from jtsm.plugins import ProposalGenerator
from jtsm.proposals.features import adjacency
from jtsm.proposals.overlay import overlay
from jtsm.structures import ProposalSet


def slic_proposals(
    image: np.ndarray, scales: Any = (50, 150, 400), compactness: float = 10.0, **_: Any
) -> ProposalSet:
    """SLIC segments at each scale (``n_segments``) and adjacent pairs of them.

    Arguments:
        image: RGB ``uint8`` ``(H, W, 3)``.
        scales: ``n_segments`` values (a sequence or a comma-separated string).
        compactness: SLIC compactness.

    Returns:
        proposals scored coarse-to-fine (coarser segments rank first; pairs after singles).
    """
    from skimage.segmentation import slic

    if isinstance(scales, str):
        scales = [int(s) for s in scales.split(",") if s.strip()]
    elif isinstance(scales, (int, float)):
        scales = [int(scales)]
    maps = [
        slic(image, n_segments=int(n), compactness=compactness, start_label=0).astype(np.int64)
        for n in sorted(scales)
    ]
    cells, cell_labels = overlay(maps)
    rows: list[np.ndarray] = []
    scores: list[float] = []
    for level, labels in enumerate(maps):
        r = int(labels.max()) + 1
        lab = cell_labels[level]
        base = 1.0 - level / (len(maps) + 1)
        for i in range(r):
            rows.append(np.nonzero(lab == i)[0])
            scores.append(base)
        for a, b in adjacency(labels):
            rows.append(np.nonzero((lab == a) | (lab == b))[0])
            scores.append(base * 0.5)
    lengths = np.array([len(x) for x in rows], np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    member = sp.csr_matrix(
        (np.ones(indices.size, bool), indices, indptr), shape=(len(rows), cell_labels.shape[1])
    )
    return ProposalSet(cells.astype(np.int32), member, np.asarray(scores, np.float32)).clean()


def generate(image: np.ndarray, *, image_path: Any = None, **options: Any) -> ProposalSet:
    """jtsm's generator signature; ``scales`` and ``compactness`` come from ``--opt``."""
    options.pop("max_proposals", None)
    return slic_proposals(image, **options)


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(ProposalGenerator("slic", generate, "SLIC superpixels at 3 scales + adjacent pairs"))
