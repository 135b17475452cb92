"""Patch-whitening initialisation of a from-scratch backbone's first convolution.

The stem's filters are set to the principal directions of the training images' own patches,
each scaled by ``1 / sqrt(eigenvalue + eps)`` and used with both signs (so a ReLU after it
keeps either side): the first layer then starts as a whitening transform of its input patches,
decorrelated and of unit variance, instead of random filters. No labels are used, only pixels
of the training images. Whitened patches are what Coates & Ng's single-layer networks learn
on, and fast CIFAR-10 training recipes (hlb-cifar10, airbench) start their first layer this
way; with the tiny backbone it takes the tag warm-up past the plateau it otherwise sits on at
the start (README, "Whitening the stem").
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["first_conv", "sample_patches", "whitening_filters", "whiten_first_conv"]


def first_conv(backbone: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``backbone`` in module order (the stem)."""
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError("the backbone has no Conv2d")


def sample_patches(images: Iterable[Tensor], conv: nn.Conv2d, per_image: int,
                   seed: int = 0) -> Tensor:
    """``(N, C*kh*kw)`` patches of ``(C, H, W)`` float images, as ``conv`` sees them.

    Patches are taken on the conv's own grid (its kernel, stride, padding and dilation), up to
    ``per_image`` of each image, drawn with a generator seeded by ``seed`` (deterministic).
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for image in images:
        cols = nn.functional.unfold(image[None].float(), conv.kernel_size, conv.dilation,
                                    conv.padding, conv.stride)[0].T  # (L, C*kh*kw)
        if len(cols) > per_image:
            cols = cols[torch.randperm(len(cols), generator=gen)[:per_image]]
        out.append(cols)
    if not out:
        raise ValueError("no images to take patches from")
    return torch.cat(out)


def whitening_filters(patches: Tensor, out_channels: int, eps: float) -> Tensor:
    """``(out_channels, D)`` filters: the top principal directions of ``(N, D)`` patches,
    scaled by ``1 / sqrt(lambda + eps)``, each with both signs.

    With ``2k = out_channels`` the filters are ``[w_1..w_k, -w_1..-w_k]``, ``w_i = v_i /
    sqrt(lambda_i + eps)`` for the eigenpairs ``(lambda_i, v_i)`` of the patch covariance in
    decreasing order; ``k`` is at most ``D`` (further channels repeat from the start). An odd
    last channel takes ``w_{k+1}``. Directions are signed so that each one's largest entry is
    positive (the eigen solver's sign is arbitrary).
    """
    x = patches.double()
    x = x - x.mean(0)
    cov = x.T @ x / max(len(x) - 1, 1)
    eigval, eigvec = torch.linalg.eigh(cov)  # ascending
    eigval, eigvec = eigval.flip(0).clamp_min(0), eigvec.flip(1)
    sign = torch.sign(eigvec.gather(0, eigvec.abs().argmax(0, keepdim=True)))
    eigvec = eigvec * torch.where(sign == 0, torch.ones_like(sign), sign)
    w = (eigvec / torch.sqrt(eigval + eps)).T  # (D, D), row i: direction i
    half = out_channels // 2
    idx = torch.arange(half) % w.shape[0]
    rows = [w[idx], -w[idx]]
    if out_channels % 2:
        rows.append(w[half % w.shape[0]][None])
    return torch.cat(rows).float()


@torch.no_grad()
def whiten_first_conv(backbone: nn.Module, images: Iterable[Tensor], per_image: int = 256,
                      eps: float = 1e-2, seed: int = 0) -> nn.Conv2d:
    """Set the stem conv's weights to :func:`whitening_filters` of the images' patches.

    Arguments:
        backbone: a backbone whose first conv sees the normalised image.
        images: ``(3, H, W)`` normalised images (as the backbone's input).
        per_image: patches taken from each image.
        eps: added to every eigenvalue (in the normalised input's units): directions with
            less variance than this are not amplified past ``1/sqrt(eps)``.
    Returns:
        the conv, its weights replaced (its bias, if any, set to 0).
    """
    conv = first_conv(backbone)
    patches = sample_patches(images, conv, per_image, seed)
    w = whitening_filters(patches, conv.out_channels, eps)
    conv.weight.copy_(w.view_as(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    return conv

