"""The selective-search plugin's strategy options (spaces, ks, similarities, sigma)."""

from __future__ import annotations

import numpy as np
import pytest

from jtsm import plugins
from jtsm.errors import ConfigError
from jtsm.proposals.runner import generate_one
from jtsm.proposals.selective_search import STRATEGY_SETS, StrategySet, selective_search


def _image(h: int = 36, w: int = 52) -> np.ndarray:
    rng = np.random.default_rng(1)
    img = np.full((h, w, 3), 120, np.uint8)
    img[:, w // 2 :] = (60, 90, 200)
    img[8:30, 10:13] = 20  # a thin dark post
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _same(a, b) -> bool:
    return len(a) == len(b) and np.array_equal(a.masks(), b.masks())


def test_options_replace_that_part_of_the_mode():
    gen = plugins.get_proposal_generator("selective-search")
    img = _image()
    s = StrategySet(("hsv", "i"), (25.0, 50.0), ("TSF", "SF"), sigma=0.0)
    ps = gen.generate(img, spaces="hsv,i", ks="25,50", similarities="tsf, SF", sigma=0,
                      max_proposals=None)
    assert _same(ps, selective_search(img, s, None))
    one_k = gen.generate(img, mode="single", ks=50, max_proposals=None)  # --opt ks=50: an int
    assert _same(one_k, selective_search(img, StrategySet(("hsv",), (50.0,), ("CTSF",)), None))
    assert STRATEGY_SETS["fast"].sigma == 0.8  # the modes are left as they were


def test_without_options_the_mode_is_unchanged():
    img = _image()
    assert _same(generate_one(img, "selective-search", 2000),
                 selective_search(img, "fast", 2000))


@pytest.mark.parametrize("opts, message", [
    ({"spaces": "hsv,xyz"}, "unknown colour space 'xyz'"),
    ({"ks": "50,big"}, "expected numbers"),
    ({"ks": "0"}, "every k must be > 0"),
    ({"similarities": "CTX"}, "letters C, T, S, F"),
    ({"similarities": "CC"}, "letters C, T, S, F"),
    ({"sigma": -1}, "must be >= 0"),
    ({"spaces": " , "}, "at least one value"),
    ({"mode": "best", "ks": 50}, "unknown mode 'best'"),
])
def test_bad_options_are_refused_by_name(opts, message):
    with pytest.raises(ConfigError, match=message):
        generate_one(_image(), "selective-search", 100, options=opts)
