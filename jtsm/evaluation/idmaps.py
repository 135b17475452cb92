"""Segment-id maps for evaluation: fast PNG decoding and the joint gt x pred histogram.

A panoptic PNG stores ``id = R + 256 G + 256^2 B``. Evaluation keeps the decoded ``(H, W, 3)``
bytes as they are (:func:`read_rgb_png`) and never builds a per-pixel id map: segment maps are
piecewise constant, so :func:`pair_runs` cuts the two images, in row-major order, into maximal
runs of equal (gt pixel, pred pixel) pairs (~5,000 runs for a 640x480 pair with ~20 segments,
against 307,200 pixels). Only the run starts are turned into ids, made contiguous through a
reusable lookup table over the 2^24 possible ids, and one weighted ``np.bincount`` over
``gt_index * n_pred + pred_index`` gives every gt x pred intersection.

Decoders, fastest first (:func:`png_decoder` names the one in use):

- ``jtsm.evaluation._pngcore``, an optional C extension built at install time: it decodes 8-bit
  RGB / RGBA PNGs and, for a gt / prediction pair, yields the runs straight from the two PNGs
  (:func:`png_pair_runs`), no image ever held whole. Any other PNG, or any fault, goes on to:
- libspng (``pyspng``), then OpenCV, which decode everything else and word every error.

``JTSM_PNGCORE=0`` in the environment turns the extension off (to compare the two paths).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from jtsm.data import coco_panoptic
from jtsm.data.coco_panoptic import read_panoptic_png, read_panoptic_rgb
from jtsm.errors import DataError

try:  # the optional C extension (setup.py); without it, libspng / OpenCV decode
    from jtsm.evaluation import _pngcore
except ImportError:  # pragma: no cover - an install without a C compiler
    _pngcore = None
if os.environ.get("JTSM_PNGCORE", "1") == "0":
    _pngcore = None

__all__ = [
    "IdIndexer", "joint_histogram", "pair_runs", "png_decoder", "png_pair_runs", "read_id_png",
    "read_rgb_png",
]

ID_LIMIT = 1 << 24  # ids live in [0, 2^24): three 8-bit channels
UNKNOWN = 0  # index of pixels whose id is neither void nor a listed segment
VOID = 1  # index of void pixels (id 0)
FIRST = 2  # index of the first listed segment


def read_id_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a panoptic PNG to an ``(H, W)`` ``uint32`` id map; errors name the file."""
    return read_panoptic_png(path, np.uint32)


def png_decoder() -> str:
    """The decoder evaluation uses first: the compiled extension, libspng or OpenCV."""
    if _pngcore is not None:
        return "jtsm._pngcore (C extension; libspng / OpenCV for other PNGs)"
    return "libspng (pyspng)" if coco_panoptic._pyspng is not None else "OpenCV"


def _read_bytes(path: str | os.PathLike[str]) -> bytes | None:
    """The file's bytes, or None when it cannot be read (the fallback names the fault)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_rgb_png(path: str | os.PathLike[str], scratch: Scratch | None = None) -> np.ndarray:
    """Decode a panoptic PNG to ``(H, W, 3)`` uint8 R, G, B; errors name the file.

    The compiled decoder takes 8-bit RGB / RGBA PNGs; anything else, and every fault, goes
    through :func:`jtsm.data.coco_panoptic.read_panoptic_rgb` (libspng / OpenCV), so results and
    error messages are the same with and without the extension. ``scratch`` keeps the decoder's
    working memory between calls.
    """
    if _pngcore is not None:
        data = _read_bytes(path)
        got = None if data is None else _pngcore.decode(data, _work(scratch))
        if got is not None:
            h, w, rgb = got
            return np.frombuffer(rgb, np.uint8).reshape(h, w, 3)
    return read_panoptic_rgb(path)


def png_pair_runs(
    gt_path: str | os.PathLike[str],
    pred_path: str | os.PathLike[str],
    scratch: Scratch | None = None,
) -> tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`pair_runs` of two panoptic PNGs, computed by the C extension from the files.

    Returns ``((height, width), gt ids, pred ids, lengths)`` (int64 arrays), or None when the
    extension is absent, a file cannot be read, either PNG is not one it decodes (it takes 8-bit
    RGB / RGBA, not interlaced, and refuses any fault) or the two sizes differ: the caller then
    decodes with :func:`read_rgb_png`, which raises the error that names the file.
    """
    if _pngcore is None:
        return None
    gt, pred = _read_bytes(gt_path), _read_bytes(pred_path)
    if gt is None or pred is None:
        return None
    got = _pngcore.pair_runs(gt, pred, _work(scratch))
    if got is None:
        return None
    h, w, runs = got
    g, p, lengths = np.frombuffer(runs, np.int64).reshape(3, -1)
    return (h, w), g, p, lengths


def _work(scratch: Scratch | None) -> bytearray | None:
    return None if scratch is None else scratch.work


def is_rgb(a: np.ndarray) -> bool:
    """An ``(H, W, 3)`` uint8 R, G, B image (else an ``(H, W)`` id map)."""
    return a.ndim == 3 and a.dtype == np.uint8


def to_ids(a: np.ndarray) -> np.ndarray:
    """An id map of ``a``: R, G, B bytes packed to ``uint32``; id maps are returned as given."""
    if not is_rgb(a):
        return a
    c = a.astype(np.uint32)
    return c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)


class Scratch:
    """Work buffers kept between images: fresh ~1 MB temporaries would each be mapped and
    page-faulted anew (glibc serves them with mmap), which cost as much as the work itself."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}
        self.work = bytearray()  # the C decoder's working memory (grown by it as needed)

    def get(self, name: str, n: int, dtype: type) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < n:
            buf = self._bufs[name] = np.empty(max(n, 1 << 16), dtype)
        return buf[:n]


def _changes(a: np.ndarray, b: np.ndarray, step: int, scratch: Scratch) -> np.ndarray:
    """Sorted positions ``i`` where ``a[i + step] != a[i]`` or ``b[i + step] != b[i]`` (1-D)."""
    n = a.size - step
    if n <= 0:
        return np.zeros(0, np.intp)
    if a.dtype == np.uint8 and b.dtype == np.uint8 and n < _CV_MAX_COLS:
        # OpenCV's SIMD byte ops on 1 x n images: xor each map with itself `step` bytes on,
        # or the two, and list the nonzero bytes.
        a2, b2 = a.reshape(1, -1), b.reshape(1, -1)
        d = cv2.bitwise_xor(a2[:, step:], a2[:, :-step], dst=scratch.get("d", n, np.uint8)[None])
        e = cv2.bitwise_xor(b2[:, step:], b2[:, :-step], dst=scratch.get("e", n, np.uint8)[None])
        d = cv2.bitwise_or(d, e, dst=d)
        pts = cv2.findNonZero(d)
        if pts is None:
            return np.zeros(0, np.intp)
        return pts.reshape(-1, 2)[:, 0].astype(np.intp)
    ne = np.not_equal(a[step:], a[:-step], out=scratch.get("ne", n, bool))
    ne |= b[step:] != b[:-step]
    return np.flatnonzero(ne)


#: OpenCV's images have at most 2^31 - 1 columns.
_CV_MAX_COLS = (1 << 31) - 1


def pair_runs(
    gt: np.ndarray, pred: np.ndarray, scratch: Scratch | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal (gt pixel, pred pixel) pairs in row-major order.

    ``gt`` and ``pred`` have the same height and width and are each an ``(H, W, 3)`` uint8 R, G,
    B image or an ``(H, W)`` integer id map. Returns the gt id and the pred id of each run
    (int64) and its length in pixels (int64).
    Ids are checked to lie in ``[0, 2^24)``. ``scratch`` keeps work buffers between calls.
    """
    if is_rgb(gt) != is_rgb(pred):
        gt, pred = to_ids(gt), to_ids(pred)
    rgb = is_rgb(gt)
    g = np.ascontiguousarray(gt).reshape(-1)
    p = np.ascontiguousarray(pred).reshape(-1)
    step = 3 if rgb else 1
    size = g.size // step
    starts = np.empty(0, np.intp)
    if size:
        cut = _changes(g, p, step, scratch or Scratch())
        if rgb:  # a change at byte i compares pixel i // 3 with the next one
            cut //= 3
            if len(cut) > 1:  # the three bytes of a pixel may change together: keep one
                keep = np.empty(len(cut), bool)
                keep[0] = True
                np.not_equal(cut[1:], cut[:-1], out=keep[1:])
                cut = cut[keep]
        starts = np.empty(len(cut) + 1, np.intp)
        starts[0] = 0
        np.add(cut, 1, out=starts[1:])
    lengths = np.diff(starts, append=size).astype(np.int64)
    return _ids_at(g, starts, rgb), _ids_at(p, starts, rgb), lengths


def _ids_at(flat: np.ndarray, starts: np.ndarray, rgb: bool) -> np.ndarray:
    if rgb:
        b = starts * 3
        r = flat[b].astype(np.int64)
        r |= flat[b + 1].astype(np.int64) << 8
        r |= flat[b + 2].astype(np.int64) << 16
        return r
    ids = flat[starts]
    if ids.size and (ids.min() < 0 or ids.max() >= ID_LIMIT):
        raise DataError("segment ids must lie in [0, 2^24)")
    return ids.astype(np.int64)


class IdIndexer:
    """Joint gt x pred histograms of two images, through a reusable id -> index lookup table.

    Indices: unknown id -> 0, void (id 0) -> 1, ``seg_ids[k]`` -> k + 2. One table of 2^24
    ``uint16`` entries is kept and only the entries of the current image are set and cleared,
    so indexing costs a single gather (a sorted search above 2^16 - 2 segments).
    """

    def __init__(self) -> None:
        self._table = np.zeros(ID_LIMIT, np.uint16)
        self._scratch = Scratch()

    def index(self, ids: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
        """Ids in ``[0, 2^24)`` (any shape) -> their ``intp`` indices.

        ``seg_ids`` must be unique, nonzero and < 2^24.
        """
        if len(seg_ids) + FIRST > 1 << 16:
            return self._index_wide(ids, seg_ids)
        t = self._table
        t[0] = VOID
        t[seg_ids] = np.arange(FIRST, FIRST + len(seg_ids), dtype=np.uint16)
        try:
            return t[ids].astype(np.intp)
        finally:
            t[seg_ids] = UNKNOWN
            t[0] = UNKNOWN

    def histogram(
        self, gt: np.ndarray, gt_seg_ids: np.ndarray, pred: np.ndarray, pred_seg_ids: np.ndarray,
    ) -> np.ndarray:
        """``(n_gt + 2, n_pred + 2)`` int64 pixel counts of every (gt index, pred index) pair.

        ``gt`` and ``pred`` are ``(H, W, 3)`` uint8 R, G, B images or ``(H, W)`` id maps of the
        same size. The counts are summed over the runs of :func:`pair_runs`.
        """
        g, p, lengths = pair_runs(gt, pred, self._scratch)
        return self.run_histogram(g, gt_seg_ids, p, pred_seg_ids, lengths)

    def run_histogram(
        self, g: np.ndarray, gt_seg_ids: np.ndarray, p: np.ndarray, pred_seg_ids: np.ndarray,
        lengths: np.ndarray,
    ) -> np.ndarray:
        """:meth:`histogram` from runs: gt ids ``g``, pred ids ``p`` (in ``[0, 2^24)``) and
        lengths, as :func:`pair_runs` or :func:`png_pair_runs` give them."""
        n_g, n_p = len(gt_seg_ids) + FIRST, len(pred_seg_ids) + FIRST
        key = self.index(g, gt_seg_ids)
        key *= n_p
        key += self.index(p, pred_seg_ids)
        hist = np.bincount(key, weights=lengths, minlength=n_g * n_p)  # exact below 2^53
        return hist.astype(np.int64).reshape(n_g, n_p)

    @property
    def scratch(self) -> Scratch:
        """The work buffers kept between images (also the C decoder's working memory)."""
        return self._scratch

    def _index_wide(self, ids: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
        """Like :meth:`index` for any number of segments (sorted search, int64 result)."""
        ids = np.asarray(ids, np.int64)
        order = np.argsort(seg_ids)
        sorted_ids = np.asarray(seg_ids, np.int64)[order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(order) - 1, 0))
        out = np.full(ids.shape, UNKNOWN, np.int64)
        if len(order):
            hit = sorted_ids[pos] == ids
            out[hit] = order[pos[hit]] + FIRST
        out[ids == 0] = VOID
        return out

    def unknown_ids(self, ids: np.ndarray, seg_ids: np.ndarray, limit: int = 5) -> list[int]:
        """The first ``limit`` distinct ids of ``ids`` (or of an R, G, B image) that are neither
        void nor listed."""
        ids = to_ids(ids)
        index = self._index_wide(ids, seg_ids)
        return np.unique(ids[index == UNKNOWN])[:limit].tolist()


def joint_histogram(
    gt_index: np.ndarray, pred_index: np.ndarray, n_gt: int, n_pred: int
) -> np.ndarray:
    """``(n_gt, n_pred)`` int64 pixel counts of every (gt index, pred index) pair."""
    comb = gt_index.ravel().astype(np.intp)
    comb *= n_pred
    comb += pred_index.ravel()
    return np.bincount(comb, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
