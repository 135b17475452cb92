"""Built-in plugin ``felzenszwalb``: Felzenszwalb regions plus adjacent pairs and triples.

Options: ``k`` (default 100), ``sigma`` (0.8), ``min_size`` (= k), ``space`` (``hsv``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jtsm.hookspecs import hookimpl
from jtsm.plugins import ProposalGenerator
from jtsm.structures import ProposalSet


def generate(
    image: np.ndarray,
    *,
    image_path: Any = None,
    k: float = 100,
    sigma: float = 0.8,
    min_size: int | None = None,
    space: str = "hsv",
    **_: Any,
) -> ProposalSet:
    """Single-level Felzenszwalb regions, their adjacent pairs and connected triples."""
    from jtsm.proposals.felzenszwalb import felzenszwalb_proposals

    return felzenszwalb_proposals(
        image,
        k=float(k),
        sigma=float(sigma),
        min_size=None if min_size is None else int(min_size),
        space=str(space),
        max_proposals=None,
    )


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(
        ProposalGenerator(
            "felzenszwalb",
            generate,
            "Felzenszwalb regions + adjacent pairs/triples (baseline); options: k, sigma, space",
        )
    )
