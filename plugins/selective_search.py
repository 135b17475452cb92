"""Built-in plugin ``selective-search``: hierarchical grouping that keeps masks.

Options (``jtsm proposals --opt KEY=VALUE``): ``mode`` (``fast`` | ``quality`` | ``single``,
default ``fast``), ``seed`` (ranking randomisation, default 0), ``max_side`` (group on a copy
downscaled to this long side, then scale the superpixel map back, nearest neighbour; default
0 = full resolution).

A strategy set other than the three modes: ``spaces`` (colour spaces from ``hsv lab rgi h
i``), ``ks`` (Felzenszwalb ``k`` values), ``similarities`` (each a combination of the letters
C, T, S, F) and ``sigma`` (Felzenszwalb's smoothing) each replace that part of ``mode``'s set;
lists are comma-separated, e.g. ``--opt spaces=hsv,lab,rgi --opt ks=25,50,100``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from jtsm.errors import ConfigError
from jtsm.hookspecs import hookimpl
from jtsm.plugins import ProposalGenerator
from jtsm.structures import ProposalSet


def _items(key: str, value: Any) -> tuple[str, ...]:
    items = tuple(s.strip() for s in str(value).split(",") if s.strip())
    if not items:
        raise ConfigError(f"selective-search: --opt {key}= needs at least one value")
    return items


def strategy_set(mode: str = "fast", spaces: Any = None, ks: Any = None,
                 similarities: Any = None, sigma: Any = None) -> Any:
    """``mode``'s :class:`~jtsm.proposals.selective_search.StrategySet` with the parts given
    replaced (``None``: the mode's); a bad name or value raises :class:`ConfigError`."""
    from jtsm.proposals.features import COLOUR_SPACES
    from jtsm.proposals.selective_search import STRATEGY_SETS

    if str(mode) not in STRATEGY_SETS:
        raise ConfigError(f"selective-search: unknown mode {mode!r} "
                          f"(known: {', '.join(STRATEGY_SETS)})")
    s = STRATEGY_SETS[str(mode)]
    if spaces is not None:
        names = tuple(x.lower() for x in _items("spaces", spaces))
        bad = [x for x in names if x not in COLOUR_SPACES]
        if bad:
            raise ConfigError(f"selective-search: unknown colour space {bad[0]!r} "
                              f"(known: {', '.join(COLOUR_SPACES)})")
        s = replace(s, spaces=names)
    if ks is not None:
        try:
            values = tuple(float(x) for x in _items("ks", ks))
        except ValueError:
            raise ConfigError(f"selective-search: ks={ks!r}: expected numbers, e.g. "
                              "ks=50,100") from None
        if any(not v > 0 for v in values):
            raise ConfigError(f"selective-search: ks={ks!r}: every k must be > 0")
        s = replace(s, ks=values)
    if similarities is not None:
        sims = tuple(x.upper() for x in _items("similarities", similarities))
        bad = [x for x in sims if set(x) - set("CTSF") or len(set(x)) != len(x)]
        if bad:
            raise ConfigError(f"selective-search: similarity {bad[0]!r} must combine the "
                              "letters C, T, S, F (e.g. CTSF)")
        s = replace(s, similarities=sims)
    if sigma is not None:
        try:
            value = float(sigma)
        except ValueError:
            raise ConfigError(f"selective-search: sigma={sigma!r}: expected a number") from None
        if value < 0:
            raise ConfigError(f"selective-search: sigma={sigma!r} must be >= 0")
        s = replace(s, sigma=value)
    return s


def generate(
    image: np.ndarray,
    *,
    image_path: Any = None,
    mode: str = "fast",
    seed: int = 0,
    max_proposals: int | None = None,
    max_side: int = 0,
    spaces: Any = None,
    ks: Any = None,
    similarities: Any = None,
    sigma: Any = None,
    **_: Any,
) -> ProposalSet:
    """Selective search proposals of an RGB ``uint8`` image, ranked, best ``max_proposals``."""
    from jtsm.proposals.selective_search import selective_search

    strategies: Any = str(mode)
    if any(v is not None for v in (spaces, ks, similarities, sigma)):
        strategies = strategy_set(str(mode), spaces, ks, similarities, sigma)
    h, w = image.shape[:2]
    small = image
    if max_side and max(h, w) > int(max_side):
        import cv2

        s = int(max_side) / max(h, w)
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                           interpolation=cv2.INTER_AREA)
    ps = selective_search(small, mode=strategies, max_proposals=max_proposals, seed=int(seed))
    return ps if small is image else ps.resize(h, w).drop_empty()


@hookimpl
def register_proposal_generators(register: Any) -> None:
    register(
        ProposalGenerator(
            "selective-search",
            generate,
            "Selective search (Uijlings et al. 2013), masks kept; options: mode=fast|quality|"
            "single, seed=N, max_side=PX, spaces=hsv,lab,.., ks=50,100,.., "
            "similarities=CTSF,TSF,.., sigma=S",
        )
    )
