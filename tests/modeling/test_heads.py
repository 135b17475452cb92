"""The refinement branches' output shapes."""

import torch

from jtsm.modeling.heads import MaskHead, SemanticHead


def test_head_shapes():
    torch.manual_seed(0)
    mask = MaskHead(19, 5, channels=16, n_convs=3)
    sem = SemanticHead(19, 4, channels=16, n_convs=2)
    assert mask(torch.randn(7, 19, 14, 14)).shape == (7, 5, 28, 28)
    assert sem(torch.randn(2, 19, 9, 11)).shape == (2, 4, 9, 11)
