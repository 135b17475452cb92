"""COCO RLE counts: decoded as pycocotools encodes them, garbage refused."""

from __future__ import annotations

import numpy as np
import pytest

from jtsm.evaluation.rle import check_rle_counts, decode_counts, encode_counts

mask_utils = pytest.importorskip("pycocotools.mask")


def _masks():
    rng = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < rng.random()
        if t % 5 == 0:
            m[:] = t % 10 == 0  # all zeros, all ones
        yield m


def test_counts_decode_as_pycocotools_encodes_them():
    for m in _masks():
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        text = rle["counts"].decode("ascii")
        runs = decode_counts(text)
        flat = np.repeat(np.arange(runs.size) % 2, runs).astype(bool)  # zeros first
        assert np.array_equal(flat, m.flatten(order="F"))
        assert encode_counts(runs) == text  # the reference's own string back
        h, w = m.shape
        assert check_rle_counts({"size": [h, w], "counts": text}) == text
        assert check_rle_counts({"size": [h, w], "counts": runs.tolist()}) == text


@pytest.mark.parametrize("counts, why", [
    ("zz{", "outside '0'..'o'"),
    ("é", "outside '0'..'o'"),
    ("0", "cover 0 pixels"),
    ("ab", "ends inside a number"),
    ("o" * 20 + "0", "too large"),
    ([10, -2, 22], "negative run"),
    ([10, 2.5], "must be integers"),
    (7, "must be a string or a list"),
])
def test_garbage_counts_are_refused(counts, why):
    with pytest.raises(ValueError, match=why):
        check_rle_counts({"size": [5, 6], "counts": counts})


def test_a_size_that_is_not_two_counts_is_refused():
    with pytest.raises(ValueError, match="size must be"):
        check_rle_counts({"size": [5], "counts": "0"})
