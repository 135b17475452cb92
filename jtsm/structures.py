"""The few types everything in jtsm passes around.

- :class:`CategoryMap`: the dataset's categories (COCO ids, names, thing/stuff) and the
  contiguous class index the model uses (things first, then stuff).
- :class:`ProposalSet`: segment proposals of one image in the MCG representation: a superpixel
  map plus a sparse proposal x superpixel membership matrix, scores and boxes.
- :class:`PanopticSeg`: one image's panoptic segmentation: a segment-id map plus segment records.

Conventions: masks are ``bool`` arrays ``(H, W)``; boxes are ``float32`` XYXY in pixels with an
exclusive right/bottom edge (a box ``[x0, y0, x1, y1]`` covers columns ``x0 .. x1-1``), so that
``w = x1 - x0`` equals COCO's XYWH width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["CategoryMap", "ProposalSet", "PanopticSeg", "masks_to_boxes", "mask_to_rle"]


# --------------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CategoryMap:
    """COCO categories and the model's contiguous class indices (things first, then stuff).

    Arguments:
        categories: COCO category dicts with ``id``, ``name`` and ``isthing`` (0/1). A category
            without ``isthing`` counts as a thing (COCO instances files have no such key).

    Raises:
        ValueError: an ``isthing`` other than 0/1, an id that is not an integer, or an id given
            twice (``categories[i]`` named; the readers add their file).
    """

    categories: tuple[dict[str, Any], ...]
    _index: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, c in enumerate(self.categories):  # a reader adds the file's name to the error
            isthing = c.get("isthing", 1)
            if isinstance(isthing, (str, list, dict)) or isthing not in (0, 1):
                raise ValueError(f"categories[{i}].isthing must be 0 or 1, got {isthing!r:.40}")
            cid = c.get("id")
            if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)) and not (
                    isinstance(cid, float) and cid.is_integer()):
                raise ValueError(f"categories[{i}].id must be an integer, got {cid!r:.40}")
        things = [c for c in self.categories if int(c.get("isthing", 1)) == 1]
        stuff = [c for c in self.categories if int(c.get("isthing", 1)) == 0]
        ordered = tuple(things + stuff)
        object.__setattr__(self, "categories", ordered)
        ids = [int(c["id"]) for c in ordered]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids: {sorted(ids)}")
        object.__setattr__(self, "_index", {cid: i for i, cid in enumerate(ids)})

    @classmethod
    def from_coco(cls, categories: Sequence[dict[str, Any]]) -> CategoryMap:
        return cls(tuple(dict(c) for c in categories))

    @property
    def num_classes(self) -> int:
        return len(self.categories)

    @property
    def num_things(self) -> int:
        return sum(1 for c in self.categories if int(c.get("isthing", 1)) == 1)

    @property
    def num_stuff(self) -> int:
        return self.num_classes - self.num_things

    @property
    def ids(self) -> list[int]:
        return [int(c["id"]) for c in self.categories]

    @property
    def names(self) -> list[str]:
        return [str(c["name"]) for c in self.categories]

    def index(self, category_id: int) -> int:
        """Contiguous class index of a COCO category id (``KeyError`` if unknown)."""
        return self._index[int(category_id)]

    def __contains__(self, category_id: object) -> bool:
        return isinstance(category_id, (int, np.integer)) and int(category_id) in self._index

    def category_id(self, index: int) -> int:
        return int(self.categories[index]["id"])

    def isthing(self, category_id: int) -> bool:
        return self.index(category_id) < self.num_things

    def tag_vector(self, category_ids: Sequence[int]) -> np.ndarray:
        """Binary ``(num_classes,)`` float32 vector with ones at the given categories."""
        t = np.zeros(self.num_classes, np.float32)
        for cid in category_ids:
            t[self.index(cid)] = 1.0
        return t


# --------------------------------------------------------------------------------------------
# Mask helpers
# --------------------------------------------------------------------------------------------
def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes (exclusive right/bottom) of ``(N, H, W)`` bool masks -> ``(N, 4)``.

    An empty mask gets the box ``[0, 0, 0, 0]``.
    """
    masks = np.asarray(masks, bool)
    n = masks.shape[0]
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return boxes
    rows = masks.any(axis=2)  # (N, H)
    cols = masks.any(axis=1)  # (N, W)
    nonempty = rows.any(axis=1)
    h, w = masks.shape[1:]
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    boxes[:] = np.stack([x0, y0, x1, y1], axis=1)
    boxes[~nonempty] = 0
    return boxes


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one ``(H, W)`` bool mask, with ``counts`` as a JSON-ready str.

    Raises:
        MissingDependencyError: pycocotools is not installed.
    """
    from jtsm.optional_deps import require

    mask_utils = require("pycocotools.mask", "pycocotools", "writing COCO RLE masks")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


# --------------------------------------------------------------------------------------------
# Proposals
# --------------------------------------------------------------------------------------------
class ProposalSet:
    """Segment proposals of one image: superpixels + sparse membership (the MCG representation).

    Attributes:
        superpixels: ``(H, W)`` int32 map of 0-based superpixel ids in ``[0, S)``.
        membership: ``(P, S)`` bool CSR matrix; row p lists the superpixels forming proposal p.
        scores: ``(P,)`` float32 objectness scores (higher first after :meth:`sorted`).
        boxes: ``(P, 4)`` float32 XYXY boxes, the extents of each proposal's superpixels.

    A proposal's mask is the union of its superpixels, so it is exact at pixel level, and
    masks of thousands of proposals never need to be held densely.
    """

    def __init__(
        self,
        superpixels: np.ndarray,
        membership: sp.spmatrix | np.ndarray,
        scores: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
    ) -> None:
        superpixels = np.ascontiguousarray(superpixels, dtype=np.int32)
        if superpixels.ndim != 2:
            raise ValueError(f"superpixels must be (H, W), got shape {superpixels.shape}")
        n_sp = int(superpixels.max()) + 1 if superpixels.size else 0
        if superpixels.size and int(superpixels.min()) < 0:
            raise ValueError("superpixel ids must be >= 0")
        m = sp.csr_matrix(membership, dtype=bool)
        if m.shape[1] < n_sp:
            raise ValueError(
                f"membership has {m.shape[1]} superpixel columns but the map uses {n_sp} ids"
            )
        m.sum_duplicates()
        m.sort_indices()
        self.superpixels = superpixels
        self.membership: sp.csr_matrix = m
        p = m.shape[0]
        if scores is None:
            scores = np.zeros(p, np.float32)
        self.scores = np.asarray(scores, np.float32).reshape(-1)
        if self.scores.shape[0] != p:
            raise ValueError(f"{p} proposals but {self.scores.shape[0]} scores")
        self.boxes = self._member_boxes() if boxes is None else np.asarray(boxes, np.float32)
        if self.boxes.shape != (p, 4):
            raise ValueError(f"boxes must be ({p}, 4), got {self.boxes.shape}")

    # ---- basic properties ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.membership.shape[0]

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"ProposalSet({len(self)} proposals, {self.num_superpixels} superpixels, {h}x{w})"

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.superpixels.shape[0]), int(self.superpixels.shape[1])

    @property
    def num_superpixels(self) -> int:
        return self.membership.shape[1]

    def superpixel_areas(self) -> np.ndarray:
        """``(S,)`` int64 pixel count of each superpixel."""
        return np.bincount(self.superpixels.ravel(), minlength=self.num_superpixels).astype(
            np.int64
        )

    def superpixel_boxes(self) -> np.ndarray:
        """``(S, 4)`` float32 XYXY extents of each superpixel (``0`` for an unused id)."""
        h, w = self.image_size
        s = self.num_superpixels
        ys, xs = np.mgrid[0:h, 0:w]
        flat = self.superpixels.ravel()
        x0 = np.full(s, w, np.int64)
        y0 = np.full(s, h, np.int64)
        x1 = np.zeros(s, np.int64)
        y1 = np.zeros(s, np.int64)
        np.minimum.at(x0, flat, xs.ravel())
        np.minimum.at(y0, flat, ys.ravel())
        np.maximum.at(x1, flat, xs.ravel() + 1)
        np.maximum.at(y1, flat, ys.ravel() + 1)
        boxes = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
        boxes[x1 == 0] = 0
        return boxes

    def _member_boxes(self) -> np.ndarray:
        p = len(self)
        out = np.zeros((p, 4), np.float32)
        if p == 0 or self.membership.nnz == 0:
            return out
        spb = self.superpixel_boxes()
        m = self.membership
        # unused ids (zero area) must not widen a box
        used = self.superpixel_areas() > 0
        valid = used[m.indices]
        big = np.float32(1e9)
        x0 = np.where(valid, spb[m.indices, 0], big)
        y0 = np.where(valid, spb[m.indices, 1], big)
        x1 = np.where(valid, spb[m.indices, 2], -big)
        y1 = np.where(valid, spb[m.indices, 3], -big)
        counts = np.diff(m.indptr)
        rows = np.nonzero(counts)[0]
        starts = m.indptr[rows]
        out[rows, 0] = np.minimum.reduceat(x0, starts)
        out[rows, 1] = np.minimum.reduceat(y0, starts)
        out[rows, 2] = np.maximum.reduceat(x1, starts)
        out[rows, 3] = np.maximum.reduceat(y1, starts)
        out[out[:, 2] < out[:, 0]] = 0  # proposals made only of unused ids are empty
        return out

    def areas(self) -> np.ndarray:
        """``(P,)`` int64 pixel area of each proposal."""
        return np.asarray(self.membership @ self.superpixel_areas()).reshape(-1).astype(np.int64)

    # ---- masks -----------------------------------------------------------------------------
    def mask(self, index: int) -> np.ndarray:
        """``(H, W)`` bool mask of proposal ``index``."""
        row = self.membership.indices[
            self.membership.indptr[index] : self.membership.indptr[index + 1]
        ]
        lut = np.zeros(self.num_superpixels, bool)
        lut[row] = True
        return lut[self.superpixels]

    def masks(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """``(k, H, W)`` bool masks of the given proposals (all when ``None``).

        Dense: only for a few proposals at a time (visualisation, export, tests).
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64)
        lut = self.membership[idx].toarray()  # (k, S)
        return lut[:, self.superpixels]

    def intersections(self, other: ProposalSet | None = None) -> np.ndarray:
        """Pairwise intersection areas ``(P, Q)`` in pixels, from the membership matrices.

        Both sets must share the superpixel map: an intersection is the summed area of the
        superpixels two proposals share (``M1 diag(area) M2^T``); no dense masks are built.
        """
        other = self if other is None else other
        if other is not self and not np.array_equal(other.superpixels, self.superpixels):
            raise ValueError("proposal sets must share the superpixel map")
        area = self.superpixel_areas().astype(np.float64)
        a = self.membership.astype(np.float64)
        b = other.membership.astype(np.float64)
        return np.asarray((a.multiply(area[None, :]) @ b.T).todense())

    def mask_iou(self, other: ProposalSet | None = None) -> np.ndarray:
        """Pairwise mask IoU ``(P, Q)`` between proposals (of ``self`` and ``other``)."""
        other = self if other is None else other
        inter = self.intersections(other)
        union = self.areas()[:, None] + other.areas()[None, :] - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    # ---- constructors ----------------------------------------------------------------------
    @classmethod
    def from_masks(
        cls, masks: np.ndarray, scores: np.ndarray | None = None
    ) -> ProposalSet:
        """Build from ``(P, H, W)`` bool masks.

        The superpixels are the cells of the partition the masks induce (pixels with the same
        membership pattern form one cell), so ``masks -> ProposalSet -> masks`` is exact.
        """
        masks = np.asarray(masks, bool)
        if masks.ndim != 3:
            raise ValueError(f"masks must be (P, H, W), got shape {masks.shape}")
        p, h, w = masks.shape
        flat = masks.reshape(p, -1)
        # group pixels by their membership pattern: pack bits per pixel, then unique rows
        packed = np.packbits(flat, axis=0).T  # (H*W, ceil(P/8))
        _, inverse = np.unique(packed, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        n_sp = int(inverse.max()) + 1 if inverse.size else 0
        # one representative pixel per cell gives the cell's membership column
        rep = np.zeros(n_sp, np.int64)
        rep[inverse] = np.arange(inverse.size)
        member = flat[:, rep]  # (P, S)
        return cls(inverse.reshape(h, w).astype(np.int32), sp.csr_matrix(member), scores)

    # ---- selection / cleaning --------------------------------------------------------------
    def __getitem__(self, index: Any) -> ProposalSet:
        """Subset of proposals (int array, slice or bool mask); the superpixel map is shared."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.nonzero(index)[0]
        return ProposalSet(
            self.superpixels, self.membership[index], self.scores[index], self.boxes[index]
        )

    def sorted(self) -> ProposalSet:
        """Proposals by descending score (stable)."""
        return self[np.argsort(-self.scores, kind="stable")]

    def topk(self, k: int) -> ProposalSet:
        """The ``k`` best-scoring proposals."""
        return self.sorted()[: max(int(k), 0)]

    def drop_empty(self) -> ProposalSet:
        """Drop proposals with zero area."""
        return self[self.areas() > 0]

    def dedup(self) -> ProposalSet:
        """Drop proposals whose mask equals an earlier (higher-scoring) one's."""
        ps = self.sorted()
        m = ps.membership
        used = ps.superpixel_areas() > 0  # empty superpixel ids do not change a mask
        seen: set[bytes] = set()
        keep = np.zeros(len(ps), bool)
        for i in range(len(ps)):
            idx = m.indices[m.indptr[i] : m.indptr[i + 1]]
            key = idx[used[idx]].astype(np.int64).tobytes()
            if key not in seen:
                seen.add(key)
                keep[i] = True
        return ps[keep]

    def clean(self, max_proposals: int | None = None) -> ProposalSet:
        """Drop empty and duplicate proposals, sort by score, keep the top ``max_proposals``."""
        ps = self.drop_empty().dedup()
        return ps if max_proposals is None else ps[: int(max_proposals)]

    def compact(self) -> ProposalSet:
        """Renumber superpixels to ``0 .. S'-1`` dropping ids no pixel uses."""
        used = self.superpixel_areas() > 0
        new_id = np.cumsum(used) - 1
        sp_map = new_id[self.superpixels].astype(np.int32)
        member = self.membership[:, np.nonzero(used)[0]]
        return ProposalSet(sp_map, member, self.scores, self.boxes)

    # ---- geometry (applied with the image) -------------------------------------------------
    def hflip(self) -> ProposalSet:
        """Mirror left-right, as the image is."""
        w = self.image_size[1]
        boxes = self.boxes.copy()
        nonempty = boxes[:, 2] > boxes[:, 0]
        boxes[nonempty, 0] = w - self.boxes[nonempty, 2]
        boxes[nonempty, 2] = w - self.boxes[nonempty, 0]
        return ProposalSet(self.superpixels[:, ::-1], self.membership, self.scores, boxes)

    def resize(self, height: int, width: int) -> ProposalSet:
        """Nearest-neighbour resize of the superpixel map; boxes recomputed from it."""
        import cv2

        sp_map = cv2.resize(
            self.superpixels, (int(width), int(height)), interpolation=cv2.INTER_NEAREST
        )
        return ProposalSet(sp_map, self.membership, self.scores)

    # ---- export ----------------------------------------------------------------------------
    def to_coco_rle(
        self, image_id: int, indices: Sequence[int] | None = None, category_id: int = 1
    ) -> list[dict[str, Any]]:
        """COCO results records (RLE masks, XYWH boxes, scores) for other tools."""
        idx = range(len(self)) if indices is None else indices
        out = []
        for i in idx:
            x0, y0, x1, y1 = (float(v) for v in self.boxes[i])
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_id),
                    "segmentation": mask_to_rle(self.mask(int(i))),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(self.scores[i]),
                }
            )
        return out


# --------------------------------------------------------------------------------------------
# Panoptic segmentation
# --------------------------------------------------------------------------------------------
@dataclass
class PanopticSeg:
    """One image's panoptic segmentation.

    Attributes:
        ids: ``(H, W)`` int64 segment-id map, 0 = void (COCO: ``id = R + 256 G + 256^2 B``).
        segments: COCO ``segments_info`` records: ``id``, ``category_id``, ``iscrowd``,
            ``area``, ``bbox`` (XYWH) and optionally ``score``.
    """

    ids: np.ndarray
    segments: list[dict[str, Any]]

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, np.int64)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.ids.shape[0]), int(self.ids.shape[1])

    @classmethod
    def from_masks(
        cls,
        masks: Sequence[np.ndarray],
        category_ids: Sequence[int],
        scores: Sequence[float] | None = None,
        iscrowd: Sequence[int] | None = None,
    ) -> PanopticSeg:
        """Paint masks in order (later ones over earlier); ids 1..N; empty segments dropped."""
        if len(masks) == 0:
            raise ValueError("from_masks needs at least one mask to know the image size")
        ids = np.zeros(np.asarray(masks[0]).shape, np.int64)
        for i, m in enumerate(masks):
            ids[np.asarray(m, bool)] = i + 1
        seg = []
        for i, cid in enumerate(category_ids):
            rec: dict[str, Any] = {"id": i + 1, "category_id": int(cid)}
            rec["iscrowd"] = int(iscrowd[i]) if iscrowd is not None else 0
            if scores is not None:
                rec["score"] = float(scores[i])
            seg.append(rec)
        return cls(ids, seg).with_stats()

    def with_stats(self) -> PanopticSeg:
        """Recompute ``area`` and ``bbox`` of every segment from the map; drop empty ones."""
        ids_present, counts = np.unique(self.ids, return_counts=True)
        area = dict(zip(ids_present.tolist(), counts.tolist()))
        keep = []
        for s in self.segments:
            a = area.get(int(s["id"]), 0)
            if a == 0:
                continue
            m = self.ids == int(s["id"])
            x0, y0, x1, y1 = masks_to_boxes(m[None])[0]
            bbox = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
            keep.append({**s, "area": int(a), "bbox": bbox})
        return PanopticSeg(self.ids, keep)

    def mask(self, segment_id: int) -> np.ndarray:
        return self.ids == int(segment_id)

    def category_ids(self) -> list[int]:
        return [int(s["category_id"]) for s in self.segments]

    def semantic(self, categories: CategoryMap, ignore: int = 255) -> np.ndarray:
        """``(H, W)`` int64 map of contiguous class indices; void and unknown -> ``ignore``."""
        lut_ids = np.array([int(s["id"]) for s in self.segments] + [0], np.int64)
        lut_cls = np.array(
            [categories.index(s["category_id"]) for s in self.segments] + [ignore], np.int64
        )
        order = np.argsort(lut_ids)
        pos = np.searchsorted(lut_ids[order], self.ids)
        pos = np.clip(pos, 0, len(order) - 1)
        hit = lut_ids[order][pos] == self.ids
        return np.where(hit, lut_cls[order][pos], ignore)
