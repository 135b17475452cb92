"""SAM models: the three published architectures, others described in JSON, checkpoints, devices.

A model is always built from a local checkpoint file (a ``state_dict`` saved with
``torch.save``); nothing is ever downloaded. The published checkpoints (ViT-B, ViT-L, ViT-H) are
linked from :data:`CHECKPOINTS_URL`. The architecture is

- one of :data:`PUBLISHED` (``--opt model=vit_b|vit_l|vit_h``), built by segment-anything's own
  ``sam_model_registry``; without ``model`` it is read off the checkpoint (the image encoder's
  width: 768, 1024, 1280);
- or described by a JSON file (``--opt model_config=PATH.json``, :class:`SamArchitecture`'s
  fields), for a SAM of another size, e.g. one trained or distilled at home.

A loaded model is kept per process (:func:`load_sam`), so a folder of images loads it once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from jtsm.errors import ConfigError

__all__ = [
    "CHECKPOINTS_URL",
    "PUBLISHED",
    "SamArchitecture",
    "build_sam",
    "load_sam",
    "read_model_config",
    "resolve_device",
]

#: where the official SAM checkpoints are published (the segment-anything README's links)
CHECKPOINTS_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"


@dataclass(frozen=True)
class SamArchitecture:
    """The sizes that define a SAM model (segment-anything's ``_build_sam``, all of them).

    The image encoder is a ViT of ``encoder_depth`` blocks of width ``encoder_embed_dim`` with
    windowed attention (``window_size`` tokens) except at ``encoder_global_attn_indexes``;
    it sees the image resized to ``image_size`` on its long side, in ``patch_size`` patches,
    and gives a ``(prompt_embed_dim, image_size / patch_size, image_size / patch_size)``
    embedding. The mask decoder is a two-way transformer of ``decoder_depth`` layers.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


#: the released models (segment_anything/build_sam.py)
PUBLISHED: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
}


def read_model_config(path: str | os.PathLike[str]) -> SamArchitecture:
    """A :class:`SamArchitecture` from a JSON object of its fields.

    Raises:
        ConfigError: missing/unreadable file, unknown or missing field, or a wrong type.
    """
    where = f"--opt model_config={path}"
    from jtsm.fileio import DuplicateKeyError, unique_keys

    try:
        obj = json.loads(Path(path).read_text(), object_pairs_hook=unique_keys)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, DuplicateKeyError) as exc:
        raise ConfigError(f"{where}: not a readable JSON file ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object of SamArchitecture fields")
    fields = {f.name: f for f in dataclasses.fields(SamArchitecture)}
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} "
                          f"(known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, value in obj.items():
        if name == "encoder_global_attn_indexes":
            ok = isinstance(value, list) and all(type(v) is int for v in value)
            value = tuple(value) if ok else value
        elif name == "mlp_ratio":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        else:
            ok = type(value) is int and value > 0
        if not ok:
            raise ConfigError(f"{where}: {name}={value!r} is not valid "
                              "(positive integers; mlp_ratio a number; the indexes a list)")
        kwargs[name] = value
    try:
        arch = SamArchitecture(**kwargs)
    except TypeError:
        missing = [n for n, f in fields.items()
                   if f.default is dataclasses.MISSING and n not in kwargs]
        raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}") from None
    if any(not 0 <= i < arch.encoder_depth for i in arch.encoder_global_attn_indexes):
        raise ConfigError(f"{where}: encoder_global_attn_indexes must lie in "
                          f"[0, encoder_depth={arch.encoder_depth})")
    if arch.image_size % arch.patch_size:
        raise ConfigError(f"{where}: image_size must be a multiple of patch_size")
    for name in ("encoder_embed_dim", "prompt_embed_dim"):
        heads = arch.encoder_num_heads if name == "encoder_embed_dim" else arch.decoder_num_heads
        if getattr(arch, name) % heads:
            raise ConfigError(f"{where}: {name} must be a multiple of its number of heads")
    if arch.prompt_embed_dim % 8:
        raise ConfigError(f"{where}: prompt_embed_dim must be a multiple of 8")
    return arch


def build_sam(arch: SamArchitecture) -> Any:
    """An untrained ``segment_anything.modeling.Sam`` of architecture ``arch`` (eval mode).

    The same construction as segment-anything's ``_build_sam``, with every size a field, so
    ``build_sam(PUBLISHED["vit_b"])`` has exactly the parameters of ``build_sam_vit_b()``.
    """
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = arch.image_size // arch.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=arch.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=arch.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=arch.iou_head_depth,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def resolve_device(device: Any) -> str:
    """``None`` -> ``"cuda"`` if a CUDA device is usable, else ``"cpu"``; checks the others.

    Raises:
        ConfigError: a device other than ``cpu`` / ``cuda`` / ``cuda:N``, or CUDA asked for
            where none is available.
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(device).strip().lower()
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"--opt device={device}: no CUDA device is available here "
                              "(use device=cpu)")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--opt device={device}: only {torch.cuda.device_count()} CUDA "
                              "device(s) here")
        return name
    raise ConfigError(f"--opt device={device!r}: expected cpu, cuda or cuda:N")


def _read_state_dict(path: Path) -> dict[str, Any]:
    import pickle
    import zipfile

    import torch

    where = f"--opt checkpoint={path}"
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile,
            OSError, AttributeError, TypeError, IndexError, KeyError) as exc:
        if isinstance(exc, pickle.UnpicklingError):
            detail = "not a torch.save file of tensors"
        else:  # the first sentence of torch's message
            detail = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:100]
        raise ConfigError(f"{where}: not a readable SAM checkpoint "
                          f"({type(exc).__name__}: {detail})") from None
    if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
        sd = sd["model"]  # a training checkpoint that wraps the state dict
    if not isinstance(sd, dict) or not sd or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise ConfigError(f"{where}: not a SAM checkpoint (expected a state dict of tensors)")
    return sd


def _published_from_width(sd: dict[str, Any], path: Path) -> str:
    w = sd.get("image_encoder.patch_embed.proj.weight")
    width = int(w.shape[0]) if w is not None and w.dim() == 4 else None
    for name, arch in PUBLISHED.items():
        if arch.encoder_embed_dim == width:
            return name
    raise ConfigError(
        f"--opt checkpoint={path}: its image encoder (width {width}) is none of "
        f"{', '.join(PUBLISHED)}; describe its architecture with --opt model_config=PATH.json"
    )


def _check_fits(model: Any, sd: dict[str, Any], path: Path, what: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        first = (shapes or missing or unexpected)[0]
        raise ConfigError(
            f"--opt checkpoint={path} does not fit {what}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(shapes)} differently shaped tensors "
            f"(first: {first})"
        )


_CACHE: dict[tuple[Any, ...], Any] = {}


def load_sam(
    checkpoint: str | os.PathLike[str] | None,
    model: str | None = None,
    model_config: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> Any:
    """The SAM model of a checkpoint file, on ``device``, in eval mode (cached per process).

    Arguments:
        checkpoint: a ``torch.save``-d state dict (the official ``sam_vit_*.pth`` files).
        model: ``vit_b`` | ``vit_l`` | ``vit_h``; ``None``: read off the checkpoint.
        model_config: JSON file of :class:`SamArchitecture` fields, for other sizes.
        device: a torch device string (:func:`resolve_device`).

    Raises:
        ConfigError: no checkpoint given (the message says where the official ones are), a
            missing, unreadable or ill-fitting checkpoint, an unknown ``model``.
    """
    if checkpoint is None or str(checkpoint).strip() == "":
        raise ConfigError(
            "method 'sam' needs --opt checkpoint=PATH, a SAM checkpoint file "
            f"(official ViT-B/L/H ones: {CHECKPOINTS_URL}; jtsm never downloads weights)"
        )
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ConfigError(f"--opt checkpoint={checkpoint}: no such file "
                          f"(official SAM checkpoints: {CHECKPOINTS_URL})")
    if model is not None and model_config is not None:
        raise ConfigError("--opt model and --opt model_config exclude each other")
    if model is not None and str(model) not in PUBLISHED:
        raise ConfigError(f"--opt model={model!r}: expected one of {', '.join(PUBLISHED)} "
                          "(or --opt model_config=PATH.json for another architecture)")
    arch = read_model_config(model_config) if model_config is not None else None
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, model, arch, device)
    if key in _CACHE:
        return _CACHE[key]
    sd = _read_state_dict(path)
    if arch is not None:
        sam, what = build_sam(arch), f"--opt model_config={model_config}"
    else:
        from segment_anything import sam_model_registry

        name = str(model) if model is not None else _published_from_width(sd, path)
        sam, what = sam_model_registry[name](), f"model={name}"
    _check_fits(sam, sd, path, what)
    sam.load_state_dict(sd)
    sam = sam.to(device).eval()
    _CACHE.clear()  # one model per process: they are large
    _CACHE[key] = sam
    return sam
