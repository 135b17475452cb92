"""Built-in plugin ``selective-search``: hierarchical grouping that keeps masks.

Options (``jtsm proposals --opt KEY=VALUE``): ``mode`` (``fast`` | ``quality`` | ``single``,
default ``fast``), ``seed`` (ranking randomisation, default 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jtsm.hookspecs import hookimpl
from jtsm.plugins import ProposalGenerator
from jtsm.structures import ProposalSet


def generate(
    image: np.ndarray, *, image_path: Any = None, mode: str = "fast", seed: int = 0, **_: Any
) -> ProposalSet:
    """Selective search proposals of an RGB ``uint8`` image; all distinct regions, ranked."""
    from jtsm.proposals.selective_search import selective_search

    return selective_search(image, mode=str(mode), max_proposals=None, seed=int(seed))


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(
        ProposalGenerator(
            "selective-search",
            generate,
            "Selective search (Uijlings et al. 2013), masks kept; options: mode=fast|quality|"
            "single, seed=N",
        )
    )
