"""What every backbone is: normalised images in, a feature map out, and the normalisation its
weights expect."""

from __future__ import annotations

from torch import Tensor, nn


class Backbone(nn.Module):
    """``forward(x (N, 3, H, W) float, normalised with mean/std) -> (N, out_channels, h, w)``.

    ``mean`` and ``std`` are per-channel RGB statistics for pixels in [0, 1]: the input
    normalisation the (pretrained) weights expect. The network in front applies them.
    """

    def __init__(
        self, out_channels: int, mean: tuple[float, float, float], std: tuple[float, float, float]
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.mean = mean
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError
