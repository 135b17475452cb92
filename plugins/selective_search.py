"""Built-in plugin ``selective-search``: hierarchical grouping that keeps masks.

Options (``jtsm proposals --opt KEY=VALUE``): ``mode`` (``fast`` | ``quality`` | ``single``,
default ``fast``), ``seed`` (ranking randomisation, default 0), ``max_side`` (group on a copy
downscaled to this long side, then scale the superpixel map back, nearest neighbour; default
0 = full resolution).
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
    mode: str = "fast",
    seed: int = 0,
    max_proposals: int | None = None,
    max_side: int = 0,
    **_: Any,
) -> ProposalSet:
    """Selective search proposals of an RGB ``uint8`` image, ranked, best ``max_proposals``."""
    from jtsm.proposals.selective_search import selective_search

    h, w = image.shape[:2]
    small = image
    if max_side and max(h, w) > int(max_side):
        import cv2

        s = int(max_side) / max(h, w)
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA)
    ps = selective_search(small, mode=str(mode), max_proposals=max_proposals, seed=int(seed))
    return ps if small is image else ps.resize(h, w).drop_empty()


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(
        ProposalGenerator(
            "selective-search",
            generate,
            "Selective search (Uijlings et al. 2013), masks kept; options: mode=fast|quality|"
            "single, seed=N, max_side=PX",
        )
    )
