"""COCO run-length counts: checked and decoded here, so that a results file with counts that do
not describe a mask of its image is refused before pycocotools reads garbage as a mask.

A COCO RLE ``{"size": [h, w], "counts": ...}`` lists run lengths of a column-major mask,
starting with a run of zeros; they sum to ``h * w``. ``counts`` is a list of integers
(uncompressed) or COCO's compressed string: each number in 5-bit groups, least significant
first, as characters ``chr(48 + group)`` with bit 0x20 set on every group but a number's last,
the last group's bit 0x10 the sign; from the fourth number on, the difference to the number two
before it is stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_rle_counts", "decode_counts", "encode_counts"]

#: Groups of 5 bits a number may take (12 x 5 = 60 bits, far more than any mask needs).
_MAX_GROUPS = 12


def decode_counts(counts: str | list[int]) -> np.ndarray:
    """The run lengths ``(n,)`` int64 of ``counts`` (a compressed string or a list).

    Raises:
        ValueError: not a list of integers nor a string of COCO's alphabet (``'0'`` to
            ``'o'``), or a string that ends inside a number.
    """
    if isinstance(counts, list):
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
            raise ValueError("counts must be integers")
        try:
            return np.asarray(counts, np.int64)
        except OverflowError:
            raise ValueError("a count is too large") from None
    if not isinstance(counts, str):
        raise ValueError(f"counts must be a string or a list, got {type(counts).__name__}")
    try:
        raw = np.frombuffer(counts.encode("ascii"), np.uint8)
    except UnicodeEncodeError:
        raise ValueError("counts hold a character outside '0'..'o'") from None
    c = raw.astype(np.int64) - 48
    if c.size and (c.min() < 0 or c.max() > 63):
        raise ValueError("counts hold a character outside '0'..'o'")
    if c.size == 0:
        return np.zeros(0, np.int64)
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("the counts string ends inside a number")
    ends = np.flatnonzero(~more)  # the last character of each number
    starts = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts + 1
    if length.max() > _MAX_GROUPS:
        raise ValueError("a count is too large")
    shift = 5 * (np.arange(c.size) - np.repeat(starts, length))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    negative = (c[ends] & 0x10) != 0  # sign-extend: x |= -1 << 5 * length
    x[negative] -= np.left_shift(np.int64(1), 5 * length[negative]).astype(np.int64)
    out = x.copy()
    out[1::2] = np.cumsum(x[1::2])  # counts[i] = x[i] + counts[i - 2] from i = 3 on
    out[2::2] = np.cumsum(x[2::2])
    return out


def encode_counts(counts: np.ndarray | list[int]) -> str:
    """Run lengths as COCO's compressed string (what pycocotools reads)."""
    cnts = [int(v) for v in counts]
    chars = []
    for i, v in enumerate(cnts):
        x = v - cnts[i - 2] if i > 2 else v
        more = True
        while more:
            g = x & 0x1F
            x >>= 5
            more = x != -1 if g & 0x10 else x != 0
            chars.append(chr(48 + (g | 0x20 if more else g)))
    return "".join(chars)


def check_rle_counts(seg: dict[str, Any]) -> str:
    """The compressed counts of a COCO RLE whose ``counts`` describe a mask of its ``size``:
    non-negative runs that sum to ``h * w``.

    Raises:
        ValueError: what is wrong with the counts (the caller names the file and record).
    """
    size = seg.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0
            for v in size)):
        raise ValueError(f"size must be [height, width], got {size!r:.40}")
    runs = decode_counts(seg["counts"])
    if runs.size and runs.min() < 0:
        raise ValueError(f"counts decode to a negative run ({int(runs.min())})")
    total = int(runs.sum())
    if total != int(size[0]) * int(size[1]):
        raise ValueError(f"counts cover {total} pixels, a {size[0]}x{size[1]} mask has "
                         f"{int(size[0]) * int(size[1])}")
    return seg["counts"] if isinstance(seg["counts"], str) else encode_counts(runs)

