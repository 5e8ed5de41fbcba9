"""A few conv-BN-ReLU layers: a backbone that trains in seconds on a CPU, for tests and demos."""

from __future__ import annotations

from torch import Tensor, nn

from model.modeling.backbones.backbone import Backbone
from model.modeling.backbones.imagenet_stats import IMAGENET_MEAN, IMAGENET_STD

_WIDTHS = (16, 32)


class TinyCNN(Backbone):
    """``(N, 3, H, W)`` → ``(N, out_channels, ceil(H/8), ceil(W/8))``: three stride-2 3x3 convs."""

    def __init__(self, out_channels: int = 64) -> None:
        # Untrained, so any normalisation would do; ImageNet's keeps inputs near zero mean.
        super().__init__(out_channels, IMAGENET_MEAN, IMAGENET_STD)
        layers: list[nn.Module] = []
        channels = 3
        for width in (*_WIDTHS, out_channels):
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


def tiny_cnn(out_channels: int = 64) -> Backbone:
    """A :class:`TinyCNN` with ``out_channels`` feature channels."""
    return TinyCNN(out_channels)
