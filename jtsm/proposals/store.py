"""The proposal store: one compressed ``.npz`` file per image, plus an index.

File format (version 1), a NumPy ``.npz`` archive written with deflate:

============== ======================= ==================================================
key            dtype, shape            meaning
============== ======================= ==================================================
``format``     str                     ``"jtsm-proposals"``
``version``    int64 ()                1
``image_size`` int64 (2,)              ``(H, W)`` of the image the proposals belong to
``superpixels`` uint16/int32 (H, W)    0-based superpixel id of every pixel
``num_superpixels`` int64 ()           ``S`` (membership columns)
``indptr``     int64 (P + 1,)          CSR row pointers of the ``(P, S)`` membership
``deltas``     uint16/int32 (nnz,)     CSR column indices, delta-coded within each row
                                       (first = index, then differences; compresses well)
``scores``     float32 (P,)            higher is better, proposals stored best first
``boxes``      float32 (P, 4)          XYXY, exclusive right/bottom edge
``image``      str                     the image's file name (relative to the image root)
``job``        str                     digest of the job that made it (``STORE/meta.json``);
                                       absent in files of older versions
``source``     str                     json ``{"bytes", "mtime_ns", "sha256"}`` of the image
                                       file it was made from; absent in older files
============== ======================= ==================================================

``path_for("a/b.jpg")`` is ``root/a/b.jpg.npz``: the key is the image's whole path relative to
the image root, so ``x.jpg`` and ``x.png`` of one folder get files of their own, and
:meth:`ProposalStore.load` checks the name stored in the file. A missing or corrupt file raises
:class:`jtsm.errors.DataError` naming it; ``expect_size`` detects a file made for another
image size. Writes are atomic (:mod:`jtsm.fileio`), so a killed run leaves whole files only.
The index files ``index*.json`` list ``{image: {"file", "proposals", "height", "width"}}``;
every shard writes its own, :meth:`ProposalStore.index` merges them. ``STORE/meta.json``
records the fingerprint of the job that made the store (method, ``--max``, options), so a
rerun with other settings is refused rather than mixed in (:mod:`jtsm.rundir.fingerprint`).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import scipy.sparse as sp

from jtsm.errors import DataError
from jtsm.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    max_image_side,
    read_image_size,
    read_json,
    safe_join,
)
from jtsm.rundir.layout import META, STORE_INDEX, read_meta
from jtsm.structures import ProposalSet

__all__ = ["FORMAT", "VERSION", "ProposalStore", "load_proposals", "save_proposals",
           "store_digest"]

FORMAT = "jtsm-proposals"
VERSION = 1
SUFFIX = ".npz"


def _encode(ps: ProposalSet, image: str, job: str = "",
            source: Mapping[str, Any] | None = None) -> bytes:
    m = ps.membership
    s = ps.num_superpixels
    idx = m.indices.astype(np.int64)
    deltas = idx.copy()
    if idx.size:
        deltas[1:] -= idx[:-1]
        starts = m.indptr[:-1][np.diff(m.indptr) > 0]
        deltas[starts] = idx[starts]
    small = s <= np.iinfo(np.uint16).max + 1
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format=np.array(FORMAT),
        version=np.array(VERSION, np.int64),
        image_size=np.array(ps.image_size, np.int64),
        superpixels=ps.superpixels.astype(np.uint16 if small else np.int32),
        num_superpixels=np.array(s, np.int64),
        indptr=m.indptr.astype(np.int64),
        deltas=deltas.astype(np.uint16 if small else np.int32),
        scores=ps.scores.astype(np.float32),
        boxes=ps.boxes.astype(np.float32),
        image=np.array(image),
        job=np.array(job),
        source=np.array(json.dumps(dict(source or {}), sort_keys=True)),
    )
    return buf.getvalue()


def save_proposals(path: str | os.PathLike[str], ps: ProposalSet, image: str = "",
                   job: str = "", source: Mapping[str, Any] | None = None) -> None:
    """Write ``ps`` to ``path`` atomically (see the module docstring for the format);
    ``source``: what the image file held (:func:`jtsm.rundir.fingerprint.source_record`)."""
    atomic_write_bytes(path, _encode(ps, image, job, source))


def _array(z: Mapping[str, np.ndarray], key: str, path: Path, kinds: str, ndim: int
           ) -> np.ndarray:
    """``z[key]`` checked to have a dtype of one of ``kinds`` (numpy kind letters) and
    ``ndim`` dimensions; anything else is a corrupt file."""
    a = z[key]
    if a.dtype.kind not in kinds or a.ndim != ndim:
        raise DataError(f"{path}: corrupt proposal file ({key!r} is {a.dtype} of shape "
                        f"{a.shape})")
    return a


def _decode(z: Mapping[str, np.ndarray], path: Path) -> ProposalSet:
    fmt = z["format"]
    if fmt.dtype.kind != "U" or fmt.ndim != 0 or str(fmt) != FORMAT:
        raise DataError(f"{path}: not a jtsm proposal file (format {str(fmt)[:40]!r})")
    version = int(_array(z, "version", path, "iu", 0))
    if version != VERSION:
        raise DataError(f"{path}: proposal file version {version}, this jtsm reads {VERSION}")
    size = _array(z, "image_size", path, "iu", 1)
    if size.shape != (2,) or size.min() < 0:
        raise DataError(f"{path}: corrupt proposal file (image_size {size.tolist()[:4]})")
    h, w = (int(v) for v in size)
    spx = _array(z, "superpixels", path, "iu", 2)
    if spx.shape != (h, w):
        raise DataError(f"{path}: superpixel map is {spx.shape}, header says {(h, w)}")
    s = int(_array(z, "num_superpixels", path, "iu", 0))
    # a real file has at most one superpixel per pixel, plus unused ids; an absurd count would
    # make every per-superpixel array that large
    if not 0 <= s <= h * w + MAX_UNUSED_IDS:
        raise DataError(f"{path}: corrupt proposal file ({s} superpixels in a {w}x{h} image)")
    if spx.size and (int(spx.min()) < 0 or int(spx.max()) >= s):
        raise DataError(f"{path}: corrupt proposal file (superpixel ids outside 0..{s - 1})")
    indptr = _array(z, "indptr", path, "iu", 1).astype(np.int64)
    deltas = _array(z, "deltas", path, "iu", 1)
    bad_ptr = indptr.size == 0 or indptr[0] != 0 or indptr[-1] != deltas.size
    if bad_ptr or np.any(np.diff(indptr) < 0):
        raise DataError(f"{path}: corrupt membership (row pointers)")
    # undo the delta coding: a running sum restarted at each row's first element. The running
    # sum never exceeds P * S, so 32-bit arithmetic suffices for all but huge files.
    p = indptr.size - 1
    work = np.int32 if p * max(s, 1) < np.iinfo(np.int32).max else np.int64
    idx = np.cumsum(deltas, dtype=work)
    if idx.size:
        lengths = np.diff(indptr)
        rows = np.nonzero(lengths)[0]
        starts = indptr[rows]
        offset = idx[starts] - deltas[starts].astype(work)
        idx -= np.repeat(offset, lengths[rows])
    if idx.size and (idx.min() < 0 or idx.max() >= s):
        raise DataError(f"{path}: corrupt membership (superpixel ids out of range)")
    scores = _array(z, "scores", path, "fiu", 1)
    boxes = _array(z, "boxes", path, "fiu", 2)
    if scores.shape != (p,) or boxes.shape != (p, 4):
        raise DataError(f"{path}: corrupt proposal file ({p} proposals, scores {scores.shape}, "
                        f"boxes {boxes.shape})")
    member = sp.csr_matrix((np.ones(idx.size, bool), idx, indptr), shape=(p, s))
    try:
        return ProposalSet(spx, member, scores, boxes)
    except ValueError as exc:
        raise DataError(f"{path}: inconsistent proposal file ({exc})") from None


#: Superpixel ids a file may have beyond one per pixel (unused ids are allowed, not billions).
MAX_UNUSED_IDS = 1 << 20

#: The arrays of one proposal file may unpack to at most this many bytes (a deflate bomb of a
#: few MB could otherwise fill the memory).
MAX_UNPACKED_BYTES = 4 << 30


def _check_name(stored: Any, image: str, path: Path) -> None:
    """The name stored in a file is the image it is loaded for (an empty one is not checked)."""
    name = str(stored) if stored is not None and getattr(stored, "ndim", 0) == 0 else ""
    if name and name != image:
        raise DataError(f"{path}: holds the proposals of {name!r}, not of {image!r}")


def _check_unpacked_size(npz: Any, path: Path) -> None:
    infos = getattr(getattr(npz, "zip", None), "infolist", lambda: [])()
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise DataError(f"{path}: corrupt proposal file (unpacks to {total / 2**30:.1f} GiB)")


def load_proposals(
    path: str | os.PathLike[str], expect_size: tuple[int, int] | None = None,
    expect_image: str | None = None,
) -> ProposalSet:
    """Read a proposal file.

    Raises:
        DataError: the file is missing, not a proposal file, corrupt, or (with
            ``expect_size=(H, W)``) made for an image of another size, or (with
            ``expect_image``) made for an image of another name.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":  # np.load would try .npy and pickle on other bytes
            kind = "empty file" if not magic else "not a .npz archive"
            raise DataError(f"{path}: corrupt proposal file ({kind})")
        with np.load(path, allow_pickle=False) as npz:
            _check_unpacked_size(npz, path)
            z = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such proposal file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, MemoryError,
            NotImplementedError, zlib.error) as exc:
        # MemoryError: an array header announcing more than the machine has
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise DataError(f"{path}: corrupt proposal file ({type(exc).__name__}: {msg})") from None
    try:
        ps = _decode(z, path)
    except KeyError as exc:
        raise DataError(f"{path}: corrupt proposal file (missing {exc})") from None
    if expect_image is not None:
        _check_name(z.get("image"), expect_image, path)
    if expect_size is not None and tuple(expect_size) != ps.image_size:
        h, w = ps.image_size
        eh, ew = expect_size
        raise DataError(
            f"{path}: proposals are for a {w}x{h} image, but the image is {ew}x{eh}"
        )
    return ps


class ProposalStore:
    """A folder of proposal files, one per image, named after the image.

    Arguments:
        root: the folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ProposalStore({str(self.root)!r})"

    def path_for(self, image: str) -> Path:
        """File of image ``image`` (a path relative to the image root):
        ``a/b.jpg -> a/b.jpg.npz`` (the whole name, so ``b.jpg`` and ``b.png`` differ).

        Raises:
            DataError: the name is absolute or escapes the root.
        """
        rel = PurePosixPath(str(image).replace("\\", "/"))
        return safe_join(self.root, str(rel) + SUFFIX)

    def exists(self, image: str) -> bool:
        return self.path_for(image).is_file()

    def save(self, image: str, ps: ProposalSet, job: str = "",
             source: Mapping[str, Any] | None = None) -> Path:
        """Write the proposals of ``image`` atomically (``job``: the digest of the job making
        them, see :meth:`read_meta`; ``source``: what the image file held, see
        :meth:`check_source`); returns the file's path."""
        path = self.path_for(image)
        save_proposals(path, ps, image, job, source)
        return path

    def load(
        self,
        image: str,
        expect_size: tuple[int, int] | None = None,
        max_proposals: int | None = None,
    ) -> ProposalSet:
        """Read the proposals of ``image``; ``max_proposals`` keeps the best-scoring ones.

        Raises:
            DataError: missing or corrupt file, or made for another image size.
        """
        ps = load_proposals(self.path_for(image), expect_size, expect_image=image)
        return ps if max_proposals is None else ps.topk(max_proposals)

    # ---- provenance and checks -------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        """``STORE/meta.json`` (the fingerprint of the job that made the store), if any."""
        return read_meta(self.root)

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Write ``STORE/meta.json`` atomically."""
        atomic_write_json(self.root / META, dict(meta), indent=2)

    def job_digest(self) -> str | None:
        """The digest of the job the store records (``None``: a store without a record); a
        run's fingerprint names its proposals by it."""
        from jtsm.rundir.fingerprint import fingerprint_digest

        fp = (self.read_meta() or {}).get("fingerprint")
        return fingerprint_digest(fp) if isinstance(fp, dict) else None

    def check_records(self, records: Iterable[Any],
                      image_root: str | os.PathLike[str] | None = None) -> None:
        """:meth:`check_files` for dataset records (``file_name`` and, where known,
        ``height``/``width``; a size over the longest side read in full is not checked)."""
        side = max_image_side()
        checks = []
        for rec in records:
            h, w = getattr(rec, "height", None), getattr(rec, "width", None)
            size = (int(h), int(w)) if h and w and max(h, w) <= side else None
            checks.append((rec.file_name, size))
        self.check_files(checks, image_root)

    def file_source(self, image: str) -> dict[str, Any] | None:
        """What the image file held when its proposals were made (size, modification time,
        content digest); ``None`` for files that predate the record, or damaged ones."""
        try:
            with np.load(self.path_for(image), allow_pickle=False) as npz:
                if "source" not in npz.files:
                    return None
                rec = json.loads(str(npz["source"]))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error):
            return None
        return rec if isinstance(rec, dict) and rec else None

    def is_current(self, image: str, path: str | os.PathLike[str], verify: bool = False
                   ) -> bool:
        """Whether the proposals of ``image`` were made from what ``path`` holds now (size and
        modification time, or the content digest when those differ or ``verify``)."""
        from jtsm.rundir.fingerprint import same_source

        return same_source(self.file_source(image), path, verify)

    def check_source(self, image: str, path: str | os.PathLike[str]) -> None:
        """Refuse proposals made from another version of the image file.

        Raises:
            DataError: naming the proposal file and the image.
        """
        if not self.is_current(image, path):
            raise DataError(f"{self.path_for(image)}: made from an earlier version of {path} "
                            "(its content changed since); rerun jtsm proposals, which remakes "
                            "the proposals of changed images")

    def file_job(self, image: str) -> str:
        """The job digest stored in the file of ``image`` ("" for files without one)."""
        path = self.path_for(image)
        try:
            with np.load(path, allow_pickle=False) as npz:
                return str(npz["job"]) if "job" in npz.files else ""
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError,
                zlib.error):
            return ""  # a damaged file is reported by load and check_files

    def check_files(self, images: list[tuple[str, tuple[int, int] | None]],
                    image_root: str | os.PathLike[str] | None = None) -> None:
        """Check every image's file before a stage uses the store: it exists, is a whole
        archive (its directory, the small arrays and the member sizes), was made for that image
        name and, where ``(H, W)`` is given, for an image of that size, and, with
        ``image_root``, from the image file as it is now (:meth:`check_source`). Cheap: no
        membership or superpixel map is decoded; an image's bytes are hashed only when its size
        or modification time differ from the record.

        Raises:
            DataError: the first bad file, named, with what is wrong and how many more are bad.
        """
        bad: list[str] = []
        for image, size in images:
            path = self.path_for(image)
            try:
                self._check_file(path, image, size, image_root)
            except DataError as exc:
                bad.append(str(exc))
        if bad:
            more = f" (and {len(bad) - 1} more bad proposal files)" if len(bad) > 1 else ""
            raise DataError(f"{bad[0]}{more}")

    def _check_file(self, path: Path, image: str, size: tuple[int, int] | None,
                    image_root: str | os.PathLike[str] | None = None) -> None:
        if not path.is_file():
            raise DataError(f"{path}: no such proposal file; make it with jtsm proposals "
                            f"--out {self.root}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                _check_unpacked_size(npz, path)
                h, w = (int(v) for v in npz["image_size"])
                _check_name(npz["image"] if "image" in npz.files else None, image, path)
                infos = {i.filename: i.file_size for i in npz.zip.infolist()}
                spx = infos.get("superpixels.npy")
                if spx is None or spx < h * w * 2:
                    raise DataError(f"{path}: corrupt proposal file (superpixel map of "
                                    f"{spx} bytes for a {w}x{h} image)")
                int(npz["indptr"].shape[0])
                source = json.loads(str(npz["source"])) if "source" in npz.files else None
        except DataError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError,
                IndexError, MemoryError, NotImplementedError, zlib.error) as exc:
            msg = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            raise DataError(f"{path}: corrupt proposal file ({type(exc).__name__}: {msg})"
                            ) from None
        if size is not None and (h, w) != tuple(size):
            raise DataError(f"{path}: proposals are for a {w}x{h} image, but {image} is "
                            f"{size[1]}x{size[0]}")
        if image_root is not None and isinstance(source, dict):
            from jtsm.rundir.fingerprint import same_source

            file = safe_join(image_root, image)
            if not same_source(source, file):
                try:  # a changed size is the plainer message
                    now = read_image_size(file)
                except DataError:
                    now = (h, w)
                if tuple(now) != (h, w):
                    raise DataError(f"{path}: proposals are for a {w}x{h} image, but the image "
                                    f"is {now[1]}x{now[0]}; rerun jtsm proposals")
                raise DataError(f"{path}: made from an earlier version of {file} (its content "
                                "changed since); rerun jtsm proposals, which remakes the "
                                "proposals of changed images")

    # ---- index -----------------------------------------------------------------------------
    def write_index(self, entries: Mapping[str, Mapping[str, Any]],
                    name: str = STORE_INDEX) -> Path:
        """Write ``root/<name>.json`` (atomic): ``{"format", "version", "images": entries}``."""
        path = self.root / f"{name}.json"
        atomic_write_json(
            path, {"format": FORMAT, "version": VERSION, "images": dict(sorted(entries.items()))}
        )
        return path

    def index(self) -> dict[str, dict[str, Any]]:
        """Merged ``{image: {"file", "proposals", "height", "width"}}`` of all index files."""
        out: dict[str, dict[str, Any]] = {}
        for p in sorted(self.root.glob(f"{STORE_INDEX}*.json")):
            obj = read_json(p)
            if not isinstance(obj, dict) or not isinstance(obj.get("images"), dict):
                raise DataError(f"{p}: not a proposal index (no 'images' object)")
            out.update(obj["images"])
        return out

    def read_entry(self, image: str) -> dict[str, Any]:
        """The index record of ``image`` read from its file's header (no membership decoding).

        Raises:
            DataError: the file is missing or corrupt.
        """
        path = self.path_for(image)
        try:
            with np.load(path, allow_pickle=False) as npz:
                _check_unpacked_size(npz, path)
                h, w = (int(v) for v in npz["image_size"])
                p = int(npz["indptr"].shape[0]) - 1
        except FileNotFoundError:
            raise DataError(f"{path}: no such proposal file") from None
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError,
                IndexError, MemoryError, NotImplementedError, zlib.error) as exc:
            msg = f"{path}: corrupt proposal file ({type(exc).__name__}: {exc})"
            raise DataError(msg) from None
        rel = path.relative_to(self.root.resolve())
        return {"file": rel.as_posix(), "proposals": p, "height": h, "width": w}

    def entry(self, image: str, ps: ProposalSet) -> dict[str, Any]:
        """The index record of ``image``."""
        h, w = ps.image_size
        rel = self.path_for(image).relative_to(self.root.resolve())
        return {"file": rel.as_posix(), "proposals": len(ps), "height": h, "width": w}


def store_digest(proposals: str | os.PathLike[str] | None) -> str | None:
    """:meth:`ProposalStore.job_digest` of the store at ``proposals`` (``None`` for none)."""
    return None if proposals is None else ProposalStore(proposals).job_digest()
