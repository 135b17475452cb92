"""Training items for the mining branch: (image, tag vector, proposals), augmented together.

Augmentation (the paper's training defaults, docs/method.md): a random short side from
``train_scales`` (long side capped at ``max_size``), horizontal flip, HSV exposure/saturation
jitter up to ``hsv_jitter`` x. Proposals are the top ``max_proposals`` of the store, resized
and flipped with the image. Images without any tag carry no signal and are skipped
(``skipped_untagged``).

The training loader (on its threads) also builds the proposals' tensors, so
the step finds them ready on the host; for a CUDA model (``pin_memory``) every tensor of an
item is then in page-locked memory, for copies to the GPU that do not block.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from jtsm.config import InputConfig, TagWarmupConfig
from jtsm.data.labels import ImageLabels, LabelSet
from jtsm.errors import DataError
from jtsm.fileio import read_image, safe_join
from jtsm.ops.proposal_tensors import ProposalTensors
from jtsm.ops.transfer import pinned
from jtsm.proposals.store import ProposalStore
from jtsm.structures import CategoryMap, ProposalSet

__all__ = ["MiningDataset", "MiningItem", "TagBatchDataset", "hflip", "hsv_jitter",
           "resize_to_scale", "select_proposals", "to_tensor"]


@dataclass
class MiningItem:
    """One augmented training image.

    Attributes:
        image: ``(3, H, W)`` float32 RGB in 0..255 (the model normalises).
        tags: ``(C,)`` float32 binary image-level labels (things first, then stuff).
        proposals: the image's proposals at the augmented size.
        image_id: the dataset's image id.
        proposal_tensors: ``proposals`` as tensors on the host, when the loader built them
            (:meth:`tensors` builds them otherwise).
    """

    image: torch.Tensor
    tags: torch.Tensor
    proposals: ProposalSet
    image_id: int
    proposal_tensors: ProposalTensors | None = field(default=None, kw_only=True, repr=False)

    def tensors(self) -> ProposalTensors:
        """The proposals as host tensors: the loader's, else built now (and kept)."""
        if self.proposal_tensors is None:
            self.proposal_tensors = ProposalTensors.from_proposal_set(self.proposals)
        return self.proposal_tensors

    def pinned(self, device: torch.device | str) -> MiningItem:
        """The item with its tensors (image, tags, proposal tensors and a subclass's tensor
        fields) in page-locked memory when ``device`` is a GPU; on a CPU ``self``
        (:func:`jtsm.ops.transfer.pinned`)."""
        if torch.device(device).type != "cuda":
            return self
        changes: dict[str, object] = {"proposal_tensors": self.tensors().pinned(device)}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = pinned(value, device)
            elif isinstance(value, tuple) and value and all(
                    isinstance(v, torch.Tensor) for v in value):
                changes[f.name] = tuple(pinned(v, device) for v in value)
        return replace(self, **changes)


def middle_scale(train_scales: Sequence[int]) -> int:
    """The middle of the training short sides (the size the warm-up and the floors use)."""
    train = sorted(train_scales)
    return train[len(train) // 2]


def resize_to_scale(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """Size ``(h', w')`` with short side ``short`` and long side at most ``max_size``."""
    s = short / min(h, w)
    if max(h, w) * s > max_size:
        s = max_size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize_short_side(image: np.ndarray, short: int, max_size: int) -> np.ndarray:
    """``(H, W, 3)`` image resized (bilinear) to :func:`resize_to_scale`'s size; the same
    array when it already has it."""
    h, w = resize_to_scale(*image.shape[:2], short, max_size)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def hsv_jitter(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Scale saturation and value (exposure) by random factors in ``[1/factor, factor]``."""
    if factor <= 1:
        return image
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    levels = np.arange(256, dtype=np.float32)
    # a table of the 256 levels per channel: hue kept, saturation and value
    # clip(float32(v) * f) truncated to uint8; one cv2.LUT pass over the pixels (~3x faster
    # than indexing each channel with NumPy, the same bytes)
    lut = np.empty((1, 256, 3), np.uint8)
    lut[0, :, 0] = np.arange(256)
    for ch in (1, 2):
        f = float(np.exp(rng.uniform(-np.log(factor), np.log(factor))))
        lut[0, :, ch] = np.clip(levels * f, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB)


def hflip(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 image mirrored left-right (``cv2.flip``: the bytes of
    ``image[:, ::-1]``, several times faster than NumPy's strided copy)."""
    return cv2.flip(image, 1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 in 0..255 (models normalise)."""
    if not image.flags.writeable:  # a cached image (torch wants writable memory to share)
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


def _proposal_bytes(ps: ProposalSet) -> int:
    """Memory held by a proposal set's arrays (superpixel map, CSR membership, scores, boxes)."""
    m = ps.membership
    return int(ps.superpixels.nbytes + m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
               + ps.scores.nbytes + ps.boxes.nbytes)


def select_proposals(ps: ProposalSet, cfg: InputConfig) -> ProposalSet:
    """Drop proposals under the area floor, keep the best ``cfg.max_proposals``; the same
    selection for training and prediction.

    The floor is ``cfg.min_proposal_area``, a fraction of the image, measured on the
    proposal's mask.
    """
    h, w = ps.image_size
    floor = cfg.min_proposal_area * h * w
    if floor > 0:
        ps = ps[ps.areas() >= floor]
    return ps.topk(cfg.max_proposals)


class MiningDataset:
    """Tagged images with their stored proposals (what the trainer draws items from: ``len``
    and ``load(index, rng)``).

    Arguments:
        labels: image-level labels (any of the three json kinds).
        images_dir: root the json's file names are relative to.
        proposals_dir: a proposal store with one file per image.
        cfg: input settings (scales, flip, jitter, proposals per image).
    """

    def __init__(self, labels: LabelSet, images_dir: str | os.PathLike[str],
                 proposals_dir: str | os.PathLike[str], cfg: InputConfig) -> None:
        self.categories: CategoryMap = labels.categories
        self.records: tuple[ImageLabels, ...] = labels.tagged()
        self.skipped_untagged = len(labels.images) - len(self.records)
        self.images_dir = Path(images_dir)
        self.store = ProposalStore(proposals_dir)
        self.cfg = cfg
        self._check_files(labels.path)
        # decoded images and selected proposals by index, up to input.cache_mb (see read)
        self._images: dict[int, np.ndarray] = {}
        self._proposals: dict[int, ProposalSet] = {}
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()  # loader threads (solver.load_threads) share it
        # the device of the model the items are for: on a GPU, the loader threads pin them
        self.model_device = torch.device("cpu")

    def _check_files(self, json_path: Path) -> None:
        """Fail before training, not hours into it: every tagged image's name stays inside
        the image folder, and its image and proposal files exist (two stats per image)."""
        if not self.records:
            raise DataError(f"{json_path}: no image has a tag, so there is nothing to train on "
                            f"({self.skipped_untagged} untagged images)")
        no_image, no_props = [], []
        for rec in self.records:
            try:
                path = safe_join(self.images_dir, rec.file_name)
                npz = self.store.path_for(rec.file_name)
            except DataError as exc:
                raise DataError(f"{json_path}: {exc}") from None
            if not path.is_file():
                no_image.append(path)
            if not npz.is_file():
                no_props.append(npz)
        if no_image:
            more = f" (and {len(no_image) - 1} more images missing)" if len(no_image) > 1 else ""
            raise DataError(f"{no_image[0]}: no such image{more}")
        if no_props:
            more = f" (and {len(no_props) - 1} more)" if len(no_props) > 1 else ""
            raise DataError(f"{no_props[0]}: no such proposal file{more}; make them with "
                            f"jtsm proposals --images {self.images_dir} --out {self.store.root}")

    def __len__(self) -> int:
        return len(self.records)

    def image(self, index: int) -> np.ndarray:
        """The original ``(H, W, 3)`` uint8 image (read-only when it comes from the cache)."""
        image = self._images.get(index)
        if image is None:
            image = read_image(safe_join(self.images_dir, self.records[index].file_name))
            if self._keep(image.nbytes):
                image.setflags(write=False)  # every later read shares it
                self._images[index] = image
        return image

    def read(self, index: int) -> tuple[np.ndarray, ProposalSet]:
        """The original image and its top proposals (checked to be of the image's size).

        Both are kept in memory while ``input.cache_mb`` allows, so the later epochs of a
        training run skip decoding the image and the proposal file (the same arrays: results
        do not change); the cached image is read-only, augmentation makes new arrays.
        """
        image = self.image(index)
        ps = self._proposals.get(index)
        if ps is None:
            ps = select_proposals(self.store.load(self.records[index].file_name,
                                                  expect_size=image.shape[:2]), self.cfg)
            if self._keep(_proposal_bytes(ps)):
                ps.superpixels.setflags(write=False)
                self._proposals[index] = ps
        return image, ps

    def _keep(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit in the cache (counted when they do)."""
        with self._cache_lock:
            if self._cached_bytes + nbytes > self.cfg.cache_mb * 2**20:
                return False
            self._cached_bytes += nbytes
            return True

    def load(self, index: int, rng: np.random.Generator) -> MiningItem:
        """Item ``index`` augmented with ``rng``, its proposal tensors built (and its tensors
        pinned when ``model_device`` is a GPU)."""
        rec = self.records[index]
        image, ps, _ = self.augment(*self.read(index), rng)
        tags = torch.from_numpy(self.categories.tag_vector(rec.labels))
        item = MiningItem(to_tensor(image), tags, ps, rec.id,
                          proposal_tensors=ProposalTensors.from_proposal_set(ps))
        return item.pinned(self.model_device)

    def augment(self, image: np.ndarray, ps: ProposalSet, rng: np.random.Generator,
                label_map: np.ndarray | None = None
                ) -> tuple[np.ndarray, ProposalSet, np.ndarray | None]:
        """Random train scale, flip and HSV jitter of an image with its proposals and, when
        given, an ``(H, W)`` integer ``label_map`` (resized nearest, flipped alike)."""
        short = int(rng.choice(self.cfg.train_scales))
        h, w = resize_to_scale(*image.shape[:2], short, self.cfg.max_size)
        if (h, w) != image.shape[:2]:
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            ps = ps.resize(h, w)
            if label_map is not None:
                label_map = cv2.resize(label_map.astype(np.float64), (w, h),
                                       interpolation=cv2.INTER_NEAREST).astype(np.int64)
        if self.cfg.hflip and rng.random() < 0.5:
            image = hflip(image)
            ps = ps.hflip()
            if label_map is not None:
                label_map = np.ascontiguousarray(label_map[:, ::-1])
        return hsv_jitter(image, self.cfg.hsv_jitter, rng), ps, label_map


class TagBatchDataset:
    """Batches of whole images with tags, for the tag-only warm-up (multi-label classification).

    An item is ``(images (B, 3, H, W) in 0..255, tags (B, C))``: ``B`` random tagged images
    resized as training resizes them (short side ``S`` = the middle training scale, aspect
    kept, so shapes look as they will to MIL), flipped and jittered as in training. Images of
    other sizes than the batch's largest are reflect-padded to it: a mirrored border holds
    only classes the image has, so the tags stay true.
    """

    def __init__(self, base: MiningDataset, batch: int) -> None:
        self.base = base
        self.batch = batch
        self.size = middle_scale(base.cfg.train_scales)

    @classmethod
    def from_config(cls, base: MiningDataset, warmup: TagWarmupConfig) -> TagBatchDataset:
        """The warm-up's batches as ``tag_warmup.*`` describes them (``jtsm mine``'s warm-up)."""
        return cls(base, warmup.batch)

    def __len__(self) -> int:
        return len(self.base)

    def load(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch led by image ``index``: ``images (B, 3, H, W)`` in 0..255, ``tags (B, C)``."""
        n = len(self.base)
        picks = [index] + [int(i) for i in rng.integers(0, n, self.batch - 1)]
        images, tags = [], []
        for i in picks:
            img = resize_short_side(self.base.image(i), self.size, self.base.cfg.max_size)
            if self.base.cfg.hflip and rng.random() < 0.5:
                img = hflip(img)
            images.append(hsv_jitter(img, self.base.cfg.hsv_jitter, rng))
            tags.append(torch.from_numpy(self.base.categories.tag_vector(
                self.base.records[i].labels)))
        height = max(im.shape[0] for im in images)
        width = max(im.shape[1] for im in images)
        dev = self.base.model_device  # pinned for a GPU (a no-op on a CPU)
        return (pinned(torch.stack([to_tensor(_reflect_pad(im, height, width))
                                    for im in images]), dev),
                pinned(torch.stack(tags), dev))


def _reflect_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(h, w, 3)`` -> ``(height, width, 3)``, mirrored at the bottom and right edges (as
    often as needed when the image is less than half the size)."""
    while image.shape[0] < height or image.shape[1] < width:
        dh = min(height - image.shape[0], image.shape[0] - 1)
        dw = min(width - image.shape[1], image.shape[1] - 1)
        image = cv2.copyMakeBorder(image, 0, max(dh, 0), 0, max(dw, 0), cv2.BORDER_REFLECT_101)
    return image
