import numpy as np
import pytest
import torch
from torch import nn

from jtsm.modeling.backbone import TinyNet
from jtsm.modeling.whitening import (
    first_conv,
    sample_patches,
    whiten_first_conv,
    whitening_filters,
)


def correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen) * torch.linspace(0.1, 3.0, d)
    return torch.randn(n, d, generator=gen) @ mix + 5.0


def test_the_filters_whiten_their_patches():
    """Responses of the 2k filters to the patches: the first k decorrelated with unit variance
    (eps negligible), the second k their negatives."""
    x = correlated(20000, 12)
    w = whitening_filters(x, 16, eps=1e-9).double()
    y = (x.double() - x.double().mean(0)) @ w.T
    cov = torch.cov(y[:, :8].T)
    assert torch.allclose(cov, torch.eye(8, dtype=torch.float64), atol=1e-4)
    assert torch.equal(w[8:], -w[:8])


def test_the_filters_are_the_covariances_principal_directions_in_order():
    x = correlated(5000, 6, seed=1).double()
    w = whitening_filters(x, 6, eps=0.5).double()
    cov = torch.cov(x.T)
    lam, vec = np.linalg.eigh(cov.numpy())
    lam, vec = lam[::-1], vec[:, ::-1]
    for i in range(3):  # direction i, scaled by 1/sqrt(lambda_i + eps), sign aside
        expect = vec[:, i] / np.sqrt(lam[i] + 0.5)
        got = w[i].numpy()
        assert np.allclose(np.abs(got), np.abs(expect), atol=1e-5)
        assert np.argmax(got) == np.argmax(np.abs(got))  # largest entry positive


def test_more_channels_than_patch_dimensions_repeat_and_odd_counts_fill():
    x = correlated(3000, 4)
    w = whitening_filters(x, 11, eps=1e-3)
    assert w.shape == (11, 4)
    assert torch.equal(w[4], w[0]) and torch.equal(w[5], -w[0])  # 5 per sign, D = 4
    assert torch.equal(w[10], w[1])  # the odd one: direction 5 % 4


def test_sample_patches_equals_a_loop_over_the_conv_grid():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    img = torch.arange(3 * 7 * 9, dtype=torch.float32).view(3, 7, 9)
    got = sample_patches([img], conv, per_image=10**6)
    padded = nn.functional.pad(img, (1, 1, 1, 1))
    rows = []
    for y in range(0, 7 + 2 - 3 + 1, 2):
        for x in range(0, 9 + 2 - 3 + 1, 2):
            rows.append(padded[:, y:y + 3, x:x + 3].reshape(-1))
    assert torch.equal(got, torch.stack(rows))


def test_sample_patches_takes_at_most_per_image_deterministically():
    conv = nn.Conv2d(3, 8, 3, stride=1, padding=1)
    imgs = [torch.rand(3, 10, 10), torch.rand(3, 6, 6)]
    a = sample_patches(imgs, conv, per_image=20, seed=4)
    b = sample_patches(imgs, conv, per_image=20, seed=4)
    assert a.shape == (40, 27) and torch.equal(a, b)
    with pytest.raises(ValueError):
        sample_patches([], conv, 5)


def test_whiten_first_conv_sets_the_tiny_stem():
    net = TinyNet(stride=16, width=8, norm="bn")
    gen = torch.Generator().manual_seed(0)
    imgs = [torch.randn(3, 32, 32, generator=gen).cumsum(2) for _ in range(4)]  # smooth rows
    conv = whiten_first_conv(net, imgs, per_image=10**6, eps=1e-3)
    assert conv is first_conv(net) and conv is net.body[0]
    patches = sample_patches(imgs, conv, 10**6)
    expect = whitening_filters(patches, 8, 1e-3)
    assert torch.equal(conv.weight.detach().flatten(1), expect)
    y = nn.functional.conv2d(torch.stack(imgs), conv.weight, None, conv.stride, conv.padding)
    var = y.transpose(0, 1).flatten(1).var(1)
    assert torch.allclose(var[:4], torch.ones(4), atol=0.05)  # unit variance on its data
