"""Configuration: defaults in code as dataclasses, files loaded over them, dotted overrides.

``load_config(path, overrides)`` starts from :class:`Config`'s defaults, applies a TOML / JSON
(or YAML, when PyYAML is installed) file, then ``key.sub=value`` overrides (``--set``), checks
types and ranges, and returns the resolved config; a run folder keeps it as ``config.json``.
Every error is a :class:`ConfigError` naming the key and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from jtsm.errors import ConfigError

__all__ = ["PRECISIONS", "BackboneConfig", "Config", "InputConfig", "SegmentsConfig",
           "MiningConfig", "RefineConfig", "SolverConfig", "TagWarmupConfig", "choices",
           "canonical_key", "choices_text", "config_to_dict", "flatten", "load_config",
           "apply_overrides", "RENAMED_KEYS", "RENAMED_SECTIONS",
           "preset_names", "resolve_config_path"]


# ---- choices: each declared once, here; a value is checked where it is coerced (_coerce) and
# the code that dispatches on one is tested to cover exactly these (tests/test_config.py)
BackboneName = Literal["tiny", "resnet18", "resnet34", "resnet50", "resnet18-ws", "resnet34-ws",
                       "resnet50-ws"]
Norm = Literal["auto", "bn", "frozen_bn", "gn"]
Precision = Literal["fp32", "bf16", "auto"]
Pooling = Literal["moi", "moi-tps", "roi-pool", "roi-align"]
Compensation = Literal["code", "paper", "none"]
OicrOverlap = Literal["box", "mask"]
Optimizer = Literal["sgd", "adamw"]
MaskWeight = Literal["image_score", "segment_score", "none"]
ThingsFrom = Literal["instance", "mined"]
StuffFrom = Literal["semantic", "mined"]
Snap = Literal["none", "superpixels"]

PRECISIONS: tuple[str, ...] = typing.get_args(Precision)  # jtsm.modeling.precision reads it


@dataclass
class BackboneConfig:
    """Feature extractor.

    ``name``: ``tiny`` (a compact CNN that trains from scratch on a CPU in minutes), or
    ``resnet18|34|50`` and their ``-ws`` variants (res5 dilated, stride 16, as the paper).
    ``weights``: ImageNet weights: ``imagenet`` (torchvision's for the ResNet's depth, from the
    torch hub cache, downloaded there on first use), ``torchvision:ResNet50_Weights.IMAGENET1K_V2``
    (any torchvision entry by name), or a file in torchvision's key layout (loaded weights-only);
    empty trains from scratch (:mod:`jtsm.modeling.imagenet_weights`).
    ``norm``: ``bn``, ``frozen_bn``, ``gn``, or ``auto`` (frozen_bn with weights, else the
    backbone's own). ``freeze_at``: stages frozen (-1 = auto). ``stride``: ``tiny`` only
    (8, 16). ``width``: ``tiny`` only, the stem's channels (stages 2x, 4x, 8x; compute grows
    as its square). ``precision``: one of :data:`PRECISIONS`, ``fp32``, ``bf16`` (autocast) or
    ``auto`` (bf16 on an AMX CPU or a bf16 GPU; :mod:`jtsm.modeling.precision`), in training
    and inference.
    """

    name: BackboneName = "tiny"
    weights: str = ""
    norm: Norm = "auto"
    freeze_at: int = -1
    stride: Literal[8, 16] = 8
    width: int = 32
    precision: Precision = "fp32"


@dataclass
class MiningConfig:
    """Panoptic mining branch (paper Sec. 3.2-3.3)."""

    pooling: Pooling = "moi"  # moi | moi-tps | roi-pool | roi-align
    pool_size: int = 7  # bins per side of the MoIPool / RoI pooling grid (h_p = w_p of Eq. 5)
    compensation: Compensation = "code"  # code: bins/(nonempty+1) | paper: Eq. 7 | none
    use_scores: bool = True  # "code" compensation also multiplies by (proposal score + 1)
    fc_dim: int = 256  # width of the mining head's two FC layers (the paper's: 4096)
    dropout: float = 0.5  # dropout probability after each FC layer of the head, in [0, 1)
    oicr_heads: int = 4  # n_r of Eq. 4
    oicr_overlap: OicrOverlap = "box"  # box | mask: how OICR spreads pseudo labels
    oicr_iou_threshold: float = 0.5  # IoU from which a proposal takes its pseudo label's class
    stuff_seeds: int = 1  # OICR pseudo ground truths per present stuff class (OICR: 1, its top
    #                       proposal; more: its further confident regions, which would
    #                       otherwise be taught as background)
    train_backbone: bool = True  # false: MIL trains the heads only, on the warm-up's backbone


@dataclass
class InputConfig:
    """Training/test image scales, augmentation and proposals per image."""

    train_scales: list[int] = field(default_factory=lambda: [112, 128, 144])  # short sides (px);
    #                                                                           one drawn per image
    max_size: int = 1333  # cap on the long side after resizing (pixels), train and test
    hflip: bool = True  # random horizontal flips in training (p = 0.5)
    hsv_jitter: float = 1.5  # exposure/saturation scaled by up to this factor
    max_proposals: int = 4000  # proposals kept per image, best first (train and predict)
    min_proposal_area: float = 0.0  # drop proposals smaller than this fraction of the image
    test_scales: list[int] = field(default_factory=lambda: [128])  # test short sides (pixels):
    #                                                                the first, or all with --tta
    cache_mb: float = 1024.0  # decoded images + proposals kept in memory in training (0: none)


@dataclass
class SolverConfig:
    """SGD with momentum (or AdamW), linear warmup, step decay; ``ims_per_batch`` is global."""

    optimizer: Optimizer = "sgd"  # sgd | adamw
    lr: float = 0.01  # base learning rate
    momentum: float = 0.9  # SGD momentum, in [0, 1)
    weight_decay: float = 5e-4  # L2 weight decay (decoupled with adamw)
    max_iter: int = 1000  # training iterations of the stage
    warmup_iters: int = 50  # iterations of the linear lr ramp (not the tag warm-up)
    warmup_factor: float = 0.1  # lr multiplier at the start of that ramp
    steps: list[int] = field(default_factory=lambda: [700])  # lr x gamma at these iterations
    gamma: float = 0.1  # lr factor at each of steps
    ims_per_batch: int = 4  # images per step over all workers (the global batch)
    checkpoint_period: int = 200  # iterations between checkpoints (RUN/checkpoints/)
    checkpoint_minutes: float = 10.0  # a checkpoint also after this many minutes (0: off): an
    #                                   interrupt loses minutes, not a period of slow iterations
    log_period: int = 10  # iterations between log lines / metrics.jsonl records
    clip_grad_norm: float = 0.0  # 0 = off
    load_threads: int = -1  # threads loading the next items during a step (0: in the loop;
    #                          -1: on a GPU one per spare core, 1-4; 0 on a CPU; see
    #                          jtsm.engine.loader)


@dataclass
class TagWarmupConfig:
    """Optional tag-only warm-up before MIL: multi-label classification of whole images.

    Uses only image-level labels (the method's supervision). From scratch it gives the backbone
    features the MIL head can start from; ``iters: 0`` turns it off (pretrained backbones).
    """

    iters: int = 0  # iterations of the tag warm-up (0: off, e.g. pretrained backbone)
    batch: int = 8  # images per item: batch-norm statistics are taken over these
    items: int = 2  # items per step (the global batch is items x batch images, any workers)
    optimizer: Optimizer = "adamw"  # optimiser of the tag warm-up: adamw | sgd
    lr: float = 0.001  # learning rate of the tag warm-up
    stride: Literal[0, 8, 16] = 0  # 0: the backbone's; 16 trains a stride-8 tiny backbone at
    #                                stride 16 (same weights, ~2.3x cheaper per image; MIL runs
    #                                at stride 8 after)
    whiten_images: int = 0  # > 0: the stem conv starts as a whitening of the patches of this
    #                         many training images (jtsm/modeling/whitening.py); 0: random init
    whiten_eps: float = 0.01  # added to the patch covariance's eigenvalues (normalised units)


@dataclass
class SegmentsConfig:
    """How mined segments are chosen from proposal scores (:mod:`jtsm.engine.selection`)."""

    presence_threshold: float = 0.5  # image score above which a class counts (no tags)
    instance_ratio: float = 0.5  # further instances need >= ratio x the top score
    max_instances: int = 10  # most instances of one thing class per image
    candidates: int = 50  # top proposals per class considered
    overlap: float = 0.2  # mask IoU above which a candidate duplicates a chosen one
    stuff_area: int = 16  # stuff regions smaller than this (pixels) are dropped
    nms: float = 0.5  # box NMS of detections
    max_detections: int = 100  # most detections per image in detections.json


@dataclass
class RefineConfig:
    """The refinement branches of ``jtsm refine`` (paper Sec. 3.4, Eq. 1, 9, 10)."""

    mask_size: int = 14  # RoIAlign output of the instance branch; masks are 2x this
    mask_convs: int = 4  # 3x3 convs of the instance branch (Mask R-CNN head)
    mask_channels: int = 256  # channels of the instance branch's convs (paper: 256)
    semantic_convs: int = 2  # 3x3 convs of the semantic branch
    semantic_channels: int = 256  # channels of the semantic branch's convs (paper: 256)
    mask_rois: int = 64  # positive boxes per image the instance loss is taken on
    roi_iou: float = 0.5  # a proposal box is a positive of a pseudo instance at this IoU
    mining_weight: float = 1.0  # Eq. 1: L = w_PM L_PM + w_IS L_IS + w_SS L_SS
    instance_weight: float = 1.0  # w_IS of Eq. 1
    semantic_weight: float = 1.0  # w_SS of Eq. 1
    mask_threshold: float = 0.5  # predicted mask probability that counts as foreground
    head_lr_mult: float = 1.0  # learning rate of the two new branches x this
    train_backbone: bool = True  # false: the backbone keeps the mining run's weights
    mask_weight: MaskWeight = "image_score"  # Eq. 9 weight: the class's image score,
    #                                          "segment_score" (the pseudo segment's own score)
    #                                          or "none"
    things_from: ThingsFrom = "instance"  # prediction: thing masks of the instance branch or
    #                                       "mined"
    snap: Snap = "none"  # "superpixels": instance masks snapped to the proposals' superpixels
    stuff_from: StuffFrom = "semantic"  # prediction: stuff of the semantic branch, or "mined"


@dataclass
class Config:
    """Everything a training run needs; saved resolved in the run folder."""

    seed: int = 0  # seed of every random draw: data order, augmentation, initialisation
    proposals: str = "selective-search"  # method used when proposals are computed on the fly
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    input: InputConfig = field(default_factory=InputConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    tag_warmup: TagWarmupConfig = field(default_factory=TagWarmupConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    def get(self, key: str) -> Any:
        """The value of a dotted key (``solver.lr``)."""
        obj: Any = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj

    def validate(self) -> Config:
        """Check every key against its range in :data:`RANGES` (and every float for being
        finite), then the checks between keys; raise :class:`ConfigError` naming the key and
        value."""
        for key, value in _float_values(self):
            if not math.isfinite(value):
                raise ConfigError(f"config value {key}={value!r} is out of range (want a finite "
                                  "number)")
        for key, (ok, want) in RANGES.items():
            value = self.get(key)
            if not ok(value):
                raise ConfigError(f"config value {key}={value!r} is out of range (want {want})")
        if self.tag_warmup.whiten_images and self.backbone.weights:
            raise ConfigError("config value tag_warmup.whiten_images="
                              f"{self.tag_warmup.whiten_images!r} "
                              "is out of range (want 0 with backbone.weights (it would replace "
                              "the pretrained stem))")
        if self.backbone.weights.strip() and self.backbone.name == "tiny":
            raise ConfigError("config value backbone.weights is set but backbone.name='tiny' "
                              "has no pretrained weights (use a resnet backbone)")
        return self


# ---- ranges --------------------------------------------------------------------------------
Check = tuple[Callable[[Any], bool], str]  # (is the value in range, what is wanted)


def _between(lo: float, hi: float | None = None, *, lo_open: bool = False,
             hi_open: bool = False) -> Check:
    """``lo <= v <= hi`` (``hi`` None: no upper bound; ``*_open``: strict)."""
    def ok(v: Any) -> bool:
        above = v > lo if lo_open else v >= lo
        below = hi is None or (v < hi if hi_open else v <= hi)
        return bool(above and below)
    if hi is None:
        return ok, f"{'>' if lo_open else '>='} {lo:g}"
    if isinstance(lo, int) and isinstance(hi, int) and not lo_open and not hi_open:
        return ok, f"{lo}..{hi}"
    return ok, f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"




def _each(check: Check, non_empty: bool = True) -> Check:
    """A list whose items all pass ``check`` (and that has one at least, with ``non_empty``)."""
    ok, want = check
    return ((lambda v: (bool(v) or not non_empty) and all(ok(x) for x in v)),
            f"{'a non-empty list of ' if non_empty else 'a list of '}values {want}")


_COUNT = _between(1)  # a count of something: at least one
_PROBABILITY = _between(0.0, 1.0)  # a probability, a fraction or an IoU

#: Every config key but the booleans, the choices (a ``Literal`` type, checked when coerced) and
#: the free text of :data:`FREE_TEXT`: the check of its value and what it wants (also in the
#: error). Floats must be finite besides.
RANGES: dict[str, Check] = {
    "seed": (lambda v: 0 <= v < 2 ** 63, ">= 0 and < 2^63"),
    "backbone.freeze_at": _between(-1, 5),
    # TinyNet's group norm takes 8 groups of its stem's channels
    "backbone.width": (lambda v: 8 <= v <= 256 and v % 8 == 0, "a multiple of 8 in 8..256"),
    "mining.pool_size": _between(1, 32),
    "mining.fc_dim": _COUNT,
    "mining.dropout": _between(0.0, 1.0, hi_open=True),
    "mining.oicr_heads": _between(0, 10),
    "mining.oicr_iou_threshold": _PROBABILITY,
    "mining.stuff_seeds": _between(1, 100),
    "input.train_scales": _each(_between(16)),
    "input.max_size": _between(16),
    "input.hsv_jitter": _between(1.0),
    "input.max_proposals": _COUNT,
    "input.min_proposal_area": _between(0.0, 1.0, hi_open=True),
    "input.test_scales": _each(_between(16)),
    "input.cache_mb": _between(0.0),
    "solver.lr": _between(0.0, lo_open=True),
    "solver.momentum": _between(0.0, 1.0, hi_open=True),
    "solver.weight_decay": _between(0.0),
    "solver.max_iter": _between(0),
    "solver.warmup_iters": _between(0),
    "solver.warmup_factor": _between(0.0, 1.0, lo_open=True),
    "solver.steps": _each(_between(0), non_empty=False),
    "solver.gamma": _between(0.0, lo_open=True),
    "solver.ims_per_batch": _COUNT,
    "solver.checkpoint_period": _COUNT,
    "solver.checkpoint_minutes": (_between(0.0)[0], ">= 0, 0 = off"),
    "solver.log_period": _COUNT,
    "solver.clip_grad_norm": (_between(0.0)[0], ">= 0, 0 = off"),
    "solver.load_threads": (_between(-1)[0], ">= 0, or -1"),
    "tag_warmup.iters": _between(0),
    "tag_warmup.batch": _between(2),
    "tag_warmup.items": _COUNT,
    "tag_warmup.lr": _between(0.0, lo_open=True),
    "tag_warmup.whiten_images": _between(0),
    "tag_warmup.whiten_eps": _between(0.0, lo_open=True),
    "segments.presence_threshold": _PROBABILITY,
    "segments.instance_ratio": _PROBABILITY,
    "segments.max_instances": _COUNT,
    "segments.candidates": _COUNT,
    "segments.overlap": _PROBABILITY,
    "segments.stuff_area": _between(0),
    "segments.nms": _PROBABILITY,
    "segments.max_detections": _COUNT,
    "refine.mask_size": _between(2, 64),
    "refine.mask_convs": _between(0, 8),
    "refine.mask_channels": _COUNT,
    "refine.semantic_convs": _between(0, 8),
    "refine.semantic_channels": _COUNT,
    "refine.mask_rois": _COUNT,
    "refine.roi_iou": _between(0.0, 1.0, lo_open=True),
    "refine.mining_weight": _between(0.0),
    "refine.instance_weight": _between(0.0),
    "refine.semantic_weight": _between(0.0),
    "refine.mask_threshold": _between(0.0, 1.0, lo_open=True, hi_open=True),
    "refine.head_lr_mult": _between(0.0, lo_open=True),
}

#: Keys of free text, checked where they are used: a weights file or name, a method's name.
FREE_TEXT = ("backbone.weights", "proposals")


def _float_values(obj: Any, prefix: str = "") -> list[tuple[str, float]]:
    """Every float of a config (lists' items too) with its dotted key."""
    out: list[tuple[str, float]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out += _float_values(value, key + ".")
        elif isinstance(value, float):
            out.append((key, value))
        elif isinstance(value, list):
            out += [(f"{key}[{i}]", v) for i, v in enumerate(value) if isinstance(v, float)]
    return out


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def choices(key: str) -> tuple[Any, ...]:
    """The choices of a dotted key whose type is a ``Literal`` (``()`` for other keys)."""
    tp: Any = Config
    for part in key.split("."):
        tp = typing.get_type_hints(tp).get(part)
        if tp is None:
            return ()
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def choices_text(choices: tuple[Any, ...]) -> str:
    """``a, b or c``: what a choice key wants (in errors and the config reference)."""
    names = [str(c) for c in choices]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` to the field type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:  # a choice: of the choices' own type, and one of them
        choices = typing.get_args(tp)
        v = _coerce(key, value, type(choices[0]))
        if v not in choices:
            raise ConfigError(f"config value {key}={v!r} is out of range (want "
                              f"{choices_text(choices)})")
        return v
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config value {key}={value!r}: expected a list")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(key, value, args[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config value {key}={value!r}: expected true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config value {key}={value!r}: expected an integer")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config value {key}={value!r}: expected an integer") from None
        if not math.isfinite(f) or f != int(f):  # inf, nan, 1e400
            raise ConfigError(f"config value {key}={value!r}: expected an integer")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config value {key}={value!r}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config value {key}={value!r}: expected a number") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config value {key}={value!r}: expected a string")
        return str(value)
    raise ConfigError(f"config key {key}: unsupported type {_type_name(tp)}")


def _set(obj: Any, parts: list[str], value: Any, full: str) -> None:
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"unknown config key {full!r}")
    hints = typing.get_type_hints(type(obj))
    name = parts[0]
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(obj))
        raise ConfigError(f"unknown config key {full!r} (known here: {known})")
    if len(parts) == 1:
        if dataclasses.is_dataclass(hints[name]):
            if not isinstance(value, dict):
                raise ConfigError(f"config value {full}: expected a table of settings")
            for k, v in value.items():
                _set(getattr(obj, name), [k], v, f"{full}.{k}")
            return
        setattr(obj, name, _coerce(full, value, hints[name]))
    else:
        _set(getattr(obj, name), parts[1:], value, full)


#: Config sections and keys renamed since jtsm 0.2.0, old name -> new: the old names still
#: work (a one-line note says the new one), and runs that recorded them are the same jobs.
#: ``refine`` is stage 2's alone: the OICR heads of the mining branch are ``mining.oicr_*``.
RENAMED_SECTIONS = {"mined": "segments", "warmup": "tag_warmup"}
RENAMED_KEYS = {"mining.refine_heads": "mining.oicr_heads",
                "mining.refine_iou": "mining.oicr_overlap",
                "mining.refine_iou_threshold": "mining.oicr_iou_threshold"}
_NOTED: set[str] = set()


def canonical_key(key: str) -> str:
    """A dotted key under its current name (``mined.nms`` -> ``segments.nms``,
    ``mining.refine_heads`` -> ``mining.oicr_heads``)."""
    head, dot, rest = key.partition(".")
    if dot and head in RENAMED_SECTIONS:
        key = f"{RENAMED_SECTIONS[head]}.{rest}"
    return RENAMED_KEYS.get(key, key)


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str], *,
                    note_renamed: bool = True) -> Config:
    """Apply ``{"a.b": v}`` or ``["a.b=v", ...]`` (values parsed as JSON when they parse).
    A key under a renamed section's old name (:data:`RENAMED_SECTIONS`) sets the new key, with
    a one-line note on stderr (once per key) unless ``note_renamed`` is false."""
    items: list[tuple[str, Any]]
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for o in overrides:
            if "=" not in o:
                raise ConfigError(f"override {o!r} must look like key=value")
            k, v = o.split("=", 1)
            try:
                parsed: Any = json.loads(v)
            except json.JSONDecodeError:
                parsed = v
            items.append((k.strip(), parsed))
    for k, v in items:
        key = canonical_key(k)
        _set(cfg, key.split("."), v, k)  # errors name the key as it was written
        if key != k and note_renamed and k not in _NOTED:
            _NOTED.add(k)
            print(f"Note: config key {k} is now {key} (the old name still works)",
                  file=sys.stderr)
    return cfg


PRESET_DIR = Path(__file__).parent / "configs"
_SUFFIXES = (".toml", ".json", ".yaml", ".yml")


def preset_names() -> list[str]:
    """The presets shipped with jtsm (``jtsm/configs/*.toml``), by name."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def resolve_config_path(name: str | os.PathLike[str], relative_to: Path | None = None,
                        where: str | None = None) -> Path:
    """A config file from a path, or from a preset's name (``synth``, ``voc``, ...).

    A value with a config suffix or a path separator is a path (relative to ``relative_to``
    when given, e.g. a ``_base_`` of another file); anything else names a preset. ``where``
    says who names it in an error (default ``--config NAME``).
    """
    text = os.fspath(name)
    who = where or f"--config {text}"
    p = Path(text)
    if p.suffix in _SUFFIXES or os.sep in text or "/" in text:
        if relative_to is not None and not p.is_absolute():
            p = relative_to / p
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found" if where is None
                              else f"{who}: config file {p} not found")
        return p
    preset = PRESET_DIR / f"{text}.toml"
    if not preset.is_file():
        raise ConfigError(f"{who}: neither a file nor a preset "
                          f"(presets: {', '.join(preset_names())})")
    return preset


#: The deepest chain of ``_base_`` files a config may build on.
MAX_BASE_DEPTH = 32


def _read_file(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's settings, flattened to dotted keys, over those of its ``_base_`` (a
    preset name or a path relative to the file; a list applies in order), as mmdetection's
    configs do. A chain of more than :data:`MAX_BASE_DEPTH` files, or one that comes back to a
    file, is refused naming the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: _base_ refers back to itself")
    if len(_seen) >= MAX_BASE_DEPTH:
        raise ConfigError(f"{_seen[0]}: _base_ files build on each other more than "
                          f"{MAX_BASE_DEPTH} deep (at {path})")
    data = _parse_file(path)
    bases = data.pop("_base_", [])
    out: dict[str, Any] = {}
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: _base_ must name presets or files, got {bases!r}")
    for base in bases:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: _base_ must name presets or files, got {base!r}")
        out.update(_read_file(resolve_config_path(base, path.parent, f"{path}: _base_ {base!r}"),
                              (*_seen, path.resolve())))
    out.update(flatten(data))
    return out


def _parse_file(path: Path) -> dict[str, Any]:
    text = path.read_bytes()
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text.decode("utf-8"))
        elif path.suffix == ".json":
            from jtsm.fileio import unique_keys  # a key given twice is refused, not the last kept

            data = json.loads(text, object_pairs_hook=unique_keys)
        elif path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ModuleNotFoundError:
                raise ConfigError(f"{path}: YAML configs need PyYAML; use TOML or JSON") from None
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"{path}: unknown config format (use .toml, .json or .yaml)")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors of three libraries
        raise ConfigError(f"{path}: cannot parse config ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a table of settings")
    return data


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: list[str] | dict[str, Any] | None = None,
                base: Config | None = None) -> Config:
    """A new config: the defaults (or a copy of ``base``, which is left as it is), then
    ``path`` (a file or a preset's name), then ``overrides``; validated."""
    cfg = copy.deepcopy(base) if base is not None else Config()
    if path is not None:
        apply_overrides(cfg, _read_file(resolve_config_path(path)))
    if overrides:
        apply_overrides(cfg, overrides)
    return cfg.validate()


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from its saved dict (a run folder's ``config.json``; one written
    before a section was renamed reads as the same config, without a note)."""
    cfg = Config()
    apply_overrides(cfg, flatten(d), note_renamed=False)
    return cfg.validate()
