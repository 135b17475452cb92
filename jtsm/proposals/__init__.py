"""Segment proposals: the on-disk store, selective search that keeps masks, MCG import.

- :mod:`jtsm.proposals.store`: one compressed file per image (:class:`ProposalStore`).
- :mod:`jtsm.proposals.selective_search` (+ ``grouping``, ``features``, ``overlay``):
  hierarchical grouping whose regions are exact sets of superpixels.
- :mod:`jtsm.proposals.felzenszwalb`, :mod:`jtsm.proposals.mcg`: the baseline and the importer.
- :mod:`jtsm.proposals.runner`: folders of images, shards, resume, process pool.
- :func:`make_proposals`: one image with any registered method (what ``jtsm predict`` uses
  when no proposal folder is given).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jtsm.proposals.store import ProposalStore, load_proposals, save_proposals
from jtsm.structures import ProposalSet

__all__ = ["ProposalStore", "load_proposals", "make_proposals", "save_proposals"]


def make_proposals(
    image: np.ndarray,
    method: str = "selective-search",
    max_proposals: int | None = 2000,
    image_path: Any = None,
    **options: Any,
) -> ProposalSet:
    """Proposals of one RGB ``uint8`` image ``(H, W, 3)`` with a registered generator.

    Empty and duplicate masks are dropped and the best ``max_proposals`` kept, exactly as
    ``jtsm proposals`` stores them.

    Raises:
        PluginError: unknown method. DataError: the method's input for this image is bad.
    """
    from jtsm.proposals.runner import generate_one

    return generate_one(image, method, max_proposals, image_path, options)
