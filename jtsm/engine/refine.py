"""``jtsm refine``: train the full model (paper Eq. 1) on pseudo panoptic labels.

Starts from a mining run's weights and trains, jointly, the mining branch (L_PM, Eq. 2-4, from
the tags), the instance branch (L_IS, Eq. 9) and the semantic branch (L_SS, Eq. 10), with the
same trainer as ``jtsm mine`` (checkpoints, ``--resume``, DDP). The pseudo labels are any COCO
panoptic json: ``jtsm relabel``'s output, a mining run's ``mined/``, or ground truth (which
gives the fully-supervised upper bound with the same budget).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from jtsm.config import Config, config_to_dict
from jtsm.data.refine_dataset import RefineDataset, RefineItem, instance_targets
from jtsm.engine.distributed import barrier, is_main
from jtsm.engine.mine import MilTrainModule, freezes_norm
from jtsm.engine.trainer import train
from jtsm.errors import DataError
from jtsm.fileio import read_json
from jtsm.modeling.build import build_model
from jtsm.modeling.criterion import PanopticCriterion
from jtsm.modeling.panoptic_model import PanopticModel
from jtsm.ops.transfer import to_device
from jtsm.proposals.store import ProposalStore, store_digest
from jtsm.rundir.checkpoint import load_checkpoint, save_checkpoint
from jtsm.rundir.fingerprint import check_weights, record_weights
from jtsm.rundir.layout import RunDir
from jtsm.structures import CategoryMap

__all__ = ["RefineTrainModule", "instance_targets", "run_refine"]

_NEW_HEADS = ("mask_head.", "semantic_head.")


class RefineTrainModule(MilTrainModule):
    """Trainer adapter: one :class:`RefineItem` -> the model's outputs -> the terms of Eq. 1
    (:class:`jtsm.modeling.criterion.PanopticCriterion`): ``loss_mil`` and ``loss_refine_r``
    (L_PM, scaled by ``refine.mining_weight``), ``loss_mask`` (L_IS, Eq. 9: each box weighted
    by its class's image score y_c, by default) and ``loss_semantic`` (L_SS, Eq. 10).
    """

    def __init__(self, model: PanopticModel, cfg: Config, freeze_norm: bool = False,
                 train_backbone: bool = True) -> None:
        super().__init__(model, freeze_norm, train_backbone)
        self.rcfg = cfg.refine
        self.criterion = PanopticCriterion.from_config(  # type: ignore[assignment]
            cfg, model.num_things)

    @classmethod
    def from_config(cls, model: PanopticModel, cfg: Config) -> RefineTrainModule:  # type: ignore[override]
        """Stage 2 as ``jtsm refine`` runs it: batch-norm statistics of the tag warm-up kept
        (the mining run's rule, :meth:`MilTrainModule.from_config`); the backbone trained
        unless ``refine.train_backbone`` is false."""
        return cls(model, cfg, freeze_norm=freezes_norm(cfg),
                   train_backbone=cfg.refine.train_backbone)

    def head_lr_mults(self) -> dict[str, float]:
        """Learning-rate multipliers of the two new branches, by this module's parameter
        names (``refine.head_lr_mult``)."""
        return {f"model.{h}": self.rcfg.head_lr_mult for h in _NEW_HEADS}

    def forward(self, item: RefineItem) -> dict[str, torch.Tensor]:  # type: ignore[override]
        model: PanopticModel = self.model  # type: ignore[assignment]
        r = self.rcfg
        device = model.pixel_mean.device
        pt = item.tensors()  # on the host: the model moves what it needs without blocking
        image = to_device(item.image[None], device)
        feats = model.features(image)
        out = model.mine(feats, pt)
        boxes, classes, targets, weights = item.instance_targets(
            r.mask_rois, r.roi_iou, 2 * r.mask_size)
        logits = model.mask_logits(feats, to_device(boxes, device), image)
        assert item.stuff_map is not None
        sem = model.semantic_logits(feats, tuple(image.shape[2:]))
        return self.criterion(out, item.tags, pt, logits, classes, targets, weights, sem,
                              item.stuff_map)


def _init_from(model: PanopticModel, source: Path) -> None:
    """Load a mining or refine run's weights; the new branches keep their init when the
    source has none."""
    weights = RunDir(source).weights
    state = load_checkpoint(weights)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ: the run's config is not the weights'
        first = str(exc).strip().splitlines()[-1].strip()
        raise DataError(f"{weights}: weights do not fit the refine model "
                        f"({first})") from None
    bad = [k for k in missing if not k.startswith(_NEW_HEADS)] + list(unexpected)
    if bad:
        raise DataError(f"{weights}: weights do not fit the refine model "
                        f"({len(bad)} keys differ, e.g. {bad[0]!r})")
    check_weights(source, read_json(RunDir(source).meta))  # fitting weights: the run's own?


def _refine_start(cfg: Config, source: Path, pseudo: str | os.PathLike[str],
                  images: str | os.PathLike[str], proposals: str | os.PathLike[str], out: Path,
                  ds: RefineDataset, resume: bool, overwrite: bool) -> Any:
    """The checks of :func:`jtsm.rundir.fingerprint.prepare_run` for a refine run."""
    from jtsm.rundir import fingerprint as fpr

    inputs = {"source": fpr.input_record(source, fpr.run_id_of(source)),
              "pseudo": fpr.input_record(pseudo, fpr.file_digest(pseudo)),
              "images": fpr.input_record(images, fpr.names_digest(
                  r.file_name for r in ds.records)),
              "proposals": fpr.input_record(proposals, store_digest(proposals))}
    return fpr.prepare_run(
        out, "refine", config_to_dict(cfg), inputs, resume=resume, overwrite=overwrite,
        check_inputs=lambda: ProposalStore(proposals).check_records(ds.records, images),
        stages=("refine",),
        model_state=lambda: build_model(cfg, ds.categories, "refine", "cpu",
                                        pretrained=False).state_dict(),
        inside={"--run": source, "--proposals": proposals})


def run_refine(
    cfg: Config,
    source: str | os.PathLike[str],
    pseudo: str | os.PathLike[str],
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    proposals: str | os.PathLike[str] | None = None,
    resume: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train the full model from the run ``source`` on ``pseudo`` on ``device``; runs on every
    rank. The folder ``out`` is checked as :func:`jtsm.engine.mine.run_mine` checks its own
    (and may not be ``source`` or inside it) before anything is written.

    Arguments:
        cfg: the resolved config (the source run's, with the user's overrides).
        proposals: the proposal store; default: the one the source run trained on.
    Returns (rank 0) a summary: images, skipped untagged, source stage.
    """
    from jtsm.engine.final_scoring import write_mined

    source, out = Path(source), Path(out)
    meta = read_json(RunDir(source).meta)
    if proposals is None:
        if "proposals" not in meta:
            raise DataError(f"{RunDir(source).meta}: names no proposal store; pass --proposals")
        proposals = meta["proposals"]
        if not Path(proposals).is_dir():
            raise DataError(f"{RunDir(source).meta}: the proposal store it records, "
                            f"{proposals}, no longer exists; pass --proposals DIR")
    try:
        categories = CategoryMap.from_coco(meta["categories"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{RunDir(source).meta}: malformed run metadata "
                        f"({type(exc).__name__}: {exc})") from None
    torch.manual_seed(cfg.seed)
    ds = RefineDataset(pseudo, images, proposals, cfg.input, categories,
                       (cfg.refine.mask_rois, cfg.refine.roi_iou, 2 * cfg.refine.mask_size))
    ds.model_device = torch.device(device)  # a GPU's items are pinned by the loader
    model = build_model(cfg, categories, "refine", device, pretrained=False)
    _init_from(model, source)
    source_stage = str(meta.get("stage", "?"))
    start = _refine_start(cfg, source, pseudo, images, proposals, out, ds, resume, overwrite)
    barrier()
    if is_main():
        start.begin({"stage": "refine", "categories": list(categories.categories),
                     **{k: v["path"] for k, v in start.fingerprint["inputs"].items()}})
    barrier()
    wrapper = RefineTrainModule.from_config(model, cfg)
    train(wrapper, ds, cfg.solver, cfg.seed, out, resume=resume, config=config_to_dict(cfg),
          stage="refine", on_log=on_log, find_unused=True, lr_mults=wrapper.head_lr_mults())
    summary: dict[str, Any] = {"images": len(ds), "skipped_untagged": ds.skipped_untagged,
                               "source_stage": source_stage}
    if is_main():
        save_checkpoint(RunDir(out).weights, model.state_dict())
        record_weights(out)
    # the refined segments of the images the pseudo labels list (tags known), what the next
    # self-training round relabels (jtsm relabel --run RUN2), and presence.json; every rank
    # scores its share of the images
    segments = write_mined(model, ds, RunDir(out).mined, cfg)
    if segments is not None:
        summary["segments"] = segments
    barrier()
    return summary
