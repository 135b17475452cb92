"""The refinement branches of the full model (paper Sec. 3.4).

- :class:`MaskHead`, the instance branch: Mask R-CNN's mask head on RoIAlign features of boxes,
  ``n_convs`` 3x3 convs, a 2x2 stride-2 deconvolution and a 1x1 prediction per thing class.
- :class:`SemanticHead`, the semantic branch: ``n_convs`` 3x3 convs over the full-image feature
  map and a 1x1 prediction per stuff class.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MaskHead", "SemanticHead"]


def _convs(in_channels: int, channels: int, n: int) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    c = in_channels
    for _ in range(n):
        layers += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(inplace=True)]
        c = channels
    return layers, c


class MaskHead(nn.Module):
    """Class-specific mask logits of boxes.

    ``forward(roi_features (K, C_feat, S, S))`` -> ``(K, num_things, 2S, 2S)`` logits.
    """

    def __init__(self, in_channels: int, num_things: int, channels: int = 256,
                 n_convs: int = 4) -> None:
        super().__init__()
        layers, c = _convs(in_channels, channels, n_convs)
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(c, channels, 2, stride=2)
        self.predictor = nn.Conv2d(channels, max(num_things, 1), 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.deconv(self.convs(x)).relu())


class SemanticHead(nn.Module):
    """Per-pixel stuff logits at feature resolution.

    ``forward(features (N, C_feat, h, w))`` -> ``(N, num_stuff, h, w)``.
    """

    def __init__(self, in_channels: int, num_stuff: int, channels: int = 256,
                 n_convs: int = 2) -> None:
        super().__init__()
        layers, c = _convs(in_channels, channels, n_convs)
        self.convs = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(c, max(num_stuff, 1), 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(self.convs(x))
