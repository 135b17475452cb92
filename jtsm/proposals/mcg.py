"""Berkeley MCG proposal files (``.mat``) -> :class:`ProposalSet`.

An MCG file holds ``superpixels`` (``(H, W)`` uint16/uint32, 1-based ids), ``labels`` (a cell
array with one list of 1-based superpixel ids per proposal) and ``scores`` (one per proposal).
MATLAB v5/v7 files are read with ``scipy.io.loadmat``, v7.3 files (HDF5) with ``h5py``, where
MATLAB's column-major arrays appear transposed and a cell array is an array of object
references. As the JTSM authors did, the top 4000 proposals are kept and duplicate and empty
ones dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from jtsm.errors import DataError
from jtsm.proposals.store import MAX_UNUSED_IDS
from jtsm.structures import ProposalSet

__all__ = ["MCG_MAX_PROPOSALS", "mcg_path_for", "read_mcg"]

MCG_MAX_PROPOSALS = 4000


def _is_hdf5(path: Path) -> bool:
    import h5py

    return bool(h5py.is_hdf5(path))


def _read_v5(path: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(path, variable_names=["superpixels", "labels", "scores"])
    for key in ("superpixels", "labels", "scores"):
        if key not in mat:
            raise DataError(f"{path}: MCG file has no {key!r} variable")
    if np.asarray(mat["labels"]).dtype != object:
        raise DataError(f"{path}: 'labels' must be a cell array (one list per proposal)")
    labels = [np.asarray(x).reshape(-1) for x in np.asarray(mat["labels"], object).reshape(-1)]
    return np.asarray(mat["superpixels"]), labels, np.asarray(mat["scores"]).reshape(-1)


def _read_v73(path: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    import h5py

    with h5py.File(path, "r") as f:
        for key in ("superpixels", "labels", "scores"):
            if key not in f:
                raise DataError(f"{path}: MCG file has no {key!r} variable")
        spx = np.asarray(f["superpixels"]).T  # MATLAB is column-major
        refs = np.asarray(f["labels"]).reshape(-1)
        labels = [np.asarray(f[ref]).reshape(-1) for ref in refs]
        scores = np.asarray(f["scores"]).reshape(-1)
    return spx, labels, scores


def read_mcg(
    path: str | os.PathLike[str], max_proposals: int | None = MCG_MAX_PROPOSALS
) -> ProposalSet:
    """Read an MCG ``.mat`` file (v5/v7 or v7.3) into a cleaned :class:`ProposalSet`.

    Raises:
        DataError: the file is missing, unreadable or inconsistent (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such MCG file")
    try:
        if _is_hdf5(path):  # MATLAB v7.3 (scipy would say "use HDF reader")
            spx, labels, scores = _read_v73(path)
        else:
            spx, labels, scores = _read_v5(path)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure names the file
        raise DataError(f"{path}: cannot read MCG file ({type(exc).__name__}: {exc})") from None
    return _to_proposals(path, spx, labels, scores, max_proposals)


def _whole_numbers(a: Any, what: str, path: Path) -> np.ndarray:
    """A numeric array of whole numbers as int64; text, cells, NaN or fractions name the file."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{path}: {what} must be numeric, got {arr.dtype} values")
    if arr.dtype.kind == "f" and arr.size:
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any() or np.abs(arr).max() > 2**53:
            raise DataError(f"{path}: {what} must be whole numbers")
    return arr.astype(np.int64)


def _to_proposals(
    path: Path, spx: np.ndarray, labels: list[Any], scores: np.ndarray, max_proposals: int | None
) -> ProposalSet:
    if spx.ndim != 2:
        raise DataError(f"{path}: superpixels must be a 2-D map, got shape {spx.shape}")
    spx = _whole_numbers(spx, "superpixels", path)
    if spx.size and spx.min() < 1:
        raise DataError(f"{path}: superpixel ids must be 1-based (found {spx.min()})")
    n_sp = int(spx.max()) if spx.size else 0
    h, w = spx.shape
    if n_sp > h * w + MAX_UNUSED_IDS:  # MCG numbers its superpixels 1..S, S <= pixels
        raise DataError(f"{path}: superpixel id {n_sp} in a {w}x{h} map")
    scores = np.asarray(scores)
    if scores.dtype.kind not in "iuf" or (scores.size and not np.isfinite(scores).all()):
        raise DataError(f"{path}: scores must be finite numbers")
    if len(labels) != scores.size:
        raise DataError(f"{path}: {len(labels)} proposals but {scores.size} scores")
    labels = [_whole_numbers(x, f"labels{{{i + 1}}}", path) for i, x in enumerate(labels)]
    lengths = np.fromiter((x.size for x in labels), np.int64, len(labels))
    indices = (
        np.concatenate(labels) - 1 if labels and lengths.sum() else np.zeros(0, np.int64)
    )
    if indices.size and (indices.min() < 0 or indices.max() >= n_sp):
        raise DataError(f"{path}: proposal labels refer to superpixels outside 1..{n_sp}")
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    member = sp.csr_matrix(
        (np.ones(indices.size, bool), indices, indptr), shape=(len(labels), n_sp)
    )
    try:
        return ProposalSet(spx - 1, member, scores.astype(np.float32)).clean(max_proposals)
    except ValueError as exc:
        raise DataError(f"{path}: inconsistent MCG file ({exc})") from None


def mcg_path_for(mcg_dir: str | os.PathLike[str], image_path: str | os.PathLike[str]) -> Path:
    """The MCG file of an image: ``mcg_dir/<image stem>.mat``."""
    return Path(mcg_dir) / (Path(image_path).stem + ".mat")
