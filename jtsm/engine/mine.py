"""``jtsm mine``: train the panoptic mining branch (L_PM, Eq. 4) from tags and proposals.

Stages, each a :func:`jtsm.engine.trainer.train` run that resumes on its own:

1. ``warmup`` (optional, ``tag_warmup.iters > 0``): multi-label classification of whole images
   with the backbone and a temporary linear classifier. It uses only the image-level tags, so it
   stays within the method's supervision; it gives a from-scratch backbone features to start from.
2. ``mine``: MIL (Eq. 2) + refinement heads (Eq. 3) on MoIPool features (Eq. 5-8). After a
   warm-up, batch-norm statistics are frozen (one image per forward is too few to estimate them).

Then the mined segments of the training images are written as COCO panoptic
(``RUN/mined/panoptic.json`` + PNGs) with detections (``RUN/mined/detections.json``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jtsm.config import Config, SolverConfig, config_to_dict
from jtsm.data.labels import read_image_labels
from jtsm.data.mining_dataset import (
    MiningDataset,
    MiningItem,
    TagBatchDataset,
    middle_scale,
    resize_short_side,
    to_tensor,
)
from jtsm.engine.distributed import barrier, is_main
from jtsm.engine.final_scoring import write_mined
from jtsm.engine.trainer import train
from jtsm.errors import ConfigError
from jtsm.modeling.build import build_model
from jtsm.modeling.criterion import MiningCriterion
from jtsm.modeling.imagenet_weights import resolve_weights
from jtsm.modeling.model import MiningModel
from jtsm.modeling.precision import run_module
from jtsm.ops.transfer import to_device
from jtsm.proposals.store import ProposalStore, store_digest
from jtsm.rundir.checkpoint import copy_stage, latest_checkpoint, save_checkpoint
from jtsm.rundir.fingerprint import record_weights
from jtsm.rundir.layout import RunDir

__all__ = ["MilTrainModule", "TagWarmupModule", "run_mine",
           "train_warmup", "warmup_solver", "warmup_stride", "whiten_stem"]


@contextmanager
def warmup_stride(model: MiningModel, stride: int) -> Iterator[None]:
    """Run the backbone at ``stride`` inside the block (0: leave it), its own stride after.

    Only backbones with ``set_stride`` (the tiny one) can; the weights are the same at both.
    """
    own = model.backbone.stride
    if stride in (0, own):
        yield
        return
    if not hasattr(model.backbone, "set_stride"):
        raise ConfigError(f"tag_warmup.stride={stride}: a {type(model.backbone).__name__} backbone "
                          f"has one "
                          f"stride ({own}); only 'tiny' can switch (use 0)")
    model.backbone.set_stride(stride)
    try:
        yield
    finally:
        model.backbone.set_stride(own)


def freezes_norm(cfg: Config) -> bool:
    """Whether training after the tag warm-up keeps its batch-norm statistics (the rule of
    both MIL and stage 2): whenever there was a warm-up."""
    return cfg.tag_warmup.iters > 0


def _norm_layers(module: nn.Module) -> list[nn.Module]:
    return [x for x in module.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]


class MilTrainModule(nn.Module):
    """Trainer adapter: one :class:`MiningItem` -> the mining losses (Eq. 2-4).

    With ``freeze_norm``, batch-norm layers of the backbone keep their statistics and affine
    parameters (eval mode, no gradient) whatever ``train()`` is called with. With
    ``train_backbone=False`` no backbone parameter gets a gradient: only the mining head learns
    (no backward through MoIPool and the backbone: a step of the CPU preset 0.115 -> 0.074 s,
    benchmarks/bench_mil_step.py).
    """

    def __init__(self, model: MiningModel, freeze_norm: bool = False,
                 train_backbone: bool = True) -> None:
        super().__init__()
        self.model = model
        self.criterion = MiningCriterion(model.oicr_overlap, model.oicr_iou_threshold,
                                         model.mil_eps, stuff_seeds=model.stuff_seeds,
                                         num_things=model.num_things)
        self.freeze_norm = freeze_norm
        if freeze_norm:
            for layer in _norm_layers(model.backbone):
                for p in layer.parameters():
                    p.requires_grad_(False)
        if not train_backbone:
            for p in model.backbone.parameters():
                p.requires_grad_(False)

    @classmethod
    def from_config(cls, model: MiningModel, cfg: Config) -> MilTrainModule:
        """The MIL stage as ``jtsm mine`` runs it: after a tag warm-up (``tag_warmup.iters > 0``)
        batch-norm statistics frozen; the backbone trained unless ``mining.train_backbone``
        is false."""
        return cls(model, freeze_norm=freezes_norm(cfg),
                   train_backbone=cfg.mining.train_backbone)

    def train(self, mode: bool = True) -> MilTrainModule:
        super().train(mode)
        if self.freeze_norm:
            for layer in _norm_layers(self.model.backbone):
                layer.eval()
        return self

    def forward(self, item: MiningItem) -> dict[str, torch.Tensor]:
        device = self.model.pixel_mean.device
        pt = item.tensors()  # on the host: the model moves what it needs without blocking
        out = self.model(to_device(item.image[None], device), pt)
        return self.criterion(out, item.tags, pt)


class TagWarmupModule(nn.Module):
    """Trainer adapter for the warm-up: ``(images (B, 3, S, S), tags (B, C))`` -> BCE.

    Holds the mining model's backbone (shared, so the warm-up trains it in place) and a
    classifier on the max and the mean of its feature map, discarded after the warm-up.
    """

    def __init__(self, model: MiningModel) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.precision = model.precision
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), False)
        self.classifier = nn.Linear(2 * model.backbone.out_channels, model.num_classes)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Tag logits ``(B, C)`` of ``(B, 3, S, S)`` images in 0..255."""
        x = (to_device(images, self.pixel_mean.device) - self.pixel_mean) / self.pixel_std
        f = run_module(self.backbone, x, self.precision)
        return self.classifier(torch.cat([f.amax((2, 3)), f.mean((2, 3))], 1))

    def forward(self, item: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, tags = item
        logits = self.logits(images)
        return {"loss_tags": F.binary_cross_entropy_with_logits(
            logits, to_device(tags, logits.device))}


def whiten_stem(model: MiningModel, ds: MiningDataset, cfg: Config) -> None:
    """Initialise the backbone's first conv as a whitening of training-image patches.

    Takes the first ``tag_warmup.whiten_images`` images, resized as the warm-up sees them (short
    side the middle training scale) and normalised as the model's input, and sets the stem's
    filters by :func:`jtsm.modeling.whitening.whiten_first_conv` (pixels only, no labels).
    Deterministic: every rank of a group computes the same weights.
    """
    from jtsm.modeling.whitening import whiten_first_conv

    size = middle_scale(ds.cfg.train_scales)
    mean, std = model.pixel_mean.cpu()[0], model.pixel_std.cpu()[0]

    def images() -> Iterator[torch.Tensor]:
        for i in range(min(cfg.tag_warmup.whiten_images, len(ds))):
            img = resize_short_side(ds.image(i), size, ds.cfg.max_size)
            yield (to_tensor(img) - mean) / std

    whiten_first_conv(model.backbone, images(), eps=cfg.tag_warmup.whiten_eps, seed=cfg.seed)


def warmup_solver(cfg: Config) -> SolverConfig:
    """The warm-up's schedule: ``tag_warmup.*`` over ``solver.*``, no ramp, x0.1 at 80%."""
    return replace(cfg.solver, max_iter=cfg.tag_warmup.iters, lr=cfg.tag_warmup.lr,
                   optimizer=cfg.tag_warmup.optimizer, ims_per_batch=cfg.tag_warmup.items,
                   warmup_iters=0, gamma=0.1, steps=[int(cfg.tag_warmup.iters * 0.8)])


def train_warmup(model: MiningModel, ds: MiningDataset, cfg: Config,
                 run_dir: str | os.PathLike[str] | None, **kwargs: Any) -> TagWarmupModule:
    """The tag warm-up as ``jtsm mine`` runs it: the stem whitened first when
    ``tag_warmup.whiten_images > 0`` (a resumed run's checkpoint replaces it), then
    ``tag_warmup.iters`` iterations at ``tag_warmup.stride``; ``kwargs`` go to :func:`train`
    (``resume``, ``config``, ``on_log``). Returns the trained warm-up module (its classifier)."""
    if cfg.tag_warmup.whiten_images > 0:
        whiten_stem(model, ds, cfg)
    warm = TagWarmupModule(model)
    with warmup_stride(model, cfg.tag_warmup.stride):
        train(warm, TagBatchDataset.from_config(ds, cfg.tag_warmup), warmup_solver(cfg), cfg.seed,
              run_dir, stage="warmup", **kwargs)
    return warm


def run_mine(
    cfg: Config,
    dataset: str | os.PathLike[str],
    images: str | os.PathLike[str],
    proposals: str | os.PathLike[str],
    out: str | os.PathLike[str],
    resume: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    write_outputs: bool = True,
    progress: Callable[..., Any] | None = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    notice: Callable[[str], None] | None = None,
    warmup_from: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train the mining branch into the run folder ``out`` on ``device``; runs on every rank
    of a group (each on its own device, :func:`jtsm.engine.device.resolve_device`).
    ``notice`` receives advice for the user before training (:func:`few_images_note`).
    ``warmup_from``: a run of the same warm-up settings whose finished tag warm-up this run
    starts from (its last warm-up checkpoint is copied in; the run's fingerprint names it), so
    that runs differing in the MIL stage alone share one warm-up.

    Before anything is written, :func:`jtsm.rundir.fingerprint.prepare_run` checks the folder
    (a new one, the same job with ``resume``, or ``overwrite``), every proposal file and, on a
    resume, that the checkpoints fit the config.

    Returns (rank 0) a summary: images used, images skipped for having no tags, stages run,
    and the mined outputs written.
    """
    out = Path(out)
    # ImageNet weights found (or downloaded) before anything else: a missing file is one line
    # before the run folder exists
    resolve_weights(cfg.backbone.weights, cfg.backbone.name)
    torch.manual_seed(cfg.seed)
    labels = read_image_labels(dataset)
    ds = MiningDataset(labels, images, proposals, cfg.input)
    ds.model_device = torch.device(device)  # a GPU's items are pinned by the loader
    if notice is not None and is_main() and (note := few_images_note(ds, cfg)):
        notice(note)
    start = mine_start(cfg, dataset, images, proposals, out, ds, resume, overwrite, warmup_from)
    barrier()
    if is_main():
        start.begin({"stage": "mine", "categories": list(ds.categories.categories),
                     **{k: v["path"] for k, v in start.fingerprint["inputs"].items()}})
        if warmup_from is not None and latest_checkpoint(out, "warmup") is None:
            copy_stage(warmup_from, out, "warmup")
    barrier()
    model = build_model(cfg, ds.categories, "mine", device)
    conf = config_to_dict(cfg)
    if cfg.tag_warmup.iters > 0:
        train_warmup(model, ds, cfg, out, resume=resume or warmup_from is not None,
                     config=conf, on_log=on_log)
    wrapper = MilTrainModule.from_config(model, cfg)
    train(wrapper, ds, cfg.solver, cfg.seed, out, resume=resume, config=conf, stage="mine",
          on_log=on_log, find_unused=True)
    summary: dict[str, Any] = {"images": len(ds), "skipped_untagged": ds.skipped_untagged,
                               "classes": ds.categories.num_classes}
    if is_main():
        save_checkpoint(RunDir(out).weights, model.state_dict())
        record_weights(out)
    if write_outputs:  # every rank scores its share of the images
        mined = write_mined(model, ds, RunDir(out).mined, cfg,
                            progress=progress if is_main() else None)
        if mined is not None:
            summary["mined"] = mined
    barrier()
    return summary


#: Images per class a backbone trained from scratch was seen to need: on the generated data
#: ~250 per class were memorised and ~1000 per class generalised (docs/own-data.md).
SCRATCH_IMAGES_PER_CLASS = 1000


def few_images_note(ds: MiningDataset, cfg: Config) -> str | None:
    """A one-line note when a backbone is trained from scratch on far fewer images per class
    than that was seen to need (``None`` otherwise): the usual cause of a model that paints
    one class over every image."""
    if cfg.backbone.weights.strip():
        return None
    counts = np.zeros(ds.categories.num_classes, np.int64)
    for rec in ds.records:
        counts += ds.categories.tag_vector(rec.labels).astype(np.int64)
    if counts.size == 0 or counts.min() * 4 >= SCRATCH_IMAGES_PER_CLASS:
        return None
    low = int(np.argmin(counts))
    return (f"Note: training the backbone from scratch on {len(ds)} images, the rarest class "
            f"({ds.categories.names[low]!r}) on {int(counts[low])}; from scratch this method "
            f"needs about {SCRATCH_IMAGES_PER_CLASS} images per class. With fewer, start from "
            "ImageNet features: --config photos (backbone.weights=imagenet).")


def mine_start(cfg: Config, dataset: str | os.PathLike[str], images: str | os.PathLike[str],
               proposals: str | os.PathLike[str], out: Path, ds: MiningDataset, resume: bool,
               overwrite: bool, warmup_from: str | os.PathLike[str] | None = None) -> Any:
    """The checks of :func:`jtsm.rundir.fingerprint.prepare_run` for a mining run."""
    from jtsm.data.output_names import check_output_names
    from jtsm.rundir import fingerprint as fpr

    check_output_names((r.file_name for r in ds.records), dataset)  # mined/ PNGs, one each
    inputs = {"dataset": fpr.input_record(dataset, fpr.file_digest(dataset)),
              "images": fpr.input_record(images, fpr.names_digest(
                  r.file_name for r in ds.records)),
              "proposals": fpr.input_record(proposals, store_digest(proposals))}
    if warmup_from is not None:
        inputs["warmup_from"] = fpr.input_record(warmup_from, fpr.run_id_of(warmup_from))
    return fpr.prepare_run(
        out, "mine", config_to_dict(cfg), inputs, resume=resume, overwrite=overwrite,
        check_inputs=lambda: ProposalStore(proposals).check_records(ds.records, images),
        stages=("warmup", "mine"),
        model_state=lambda: build_model(cfg, ds.categories, "mine", "cpu",
                                        pretrained=False).state_dict(),
        inside={"--proposals": proposals, "warmup_from": warmup_from})
