"""The IBN layer of IBN-Net (Pan, Luo, Shi and Tang, "Two at Once: Enhancing Learning and
Generalization Capacities via IBN-Net", ECCV 2018): instance norm on some channels, batch norm on
the rest."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# IBN-a normalises half of the channels by instances (the paper's choice, and the released
# weights').
DEFAULT_IN_RATIO = 0.5


class InstanceBatchNorm(nn.Module):
    """``(N, C, H, W)`` → same shape: the first ``instance_channels = int(C * in_ratio)``
    channels through ``InstanceNorm2d(affine=True)``, the others through ``BatchNorm2d``.

    Submodule names ``IN`` and ``BN`` are those of the released IBN-Net weights.
    """

    def __init__(self, channels: int, in_ratio: float = DEFAULT_IN_RATIO) -> None:
        super().__init__()
        self.instance_channels = int(channels * in_ratio)
        if not 0 < self.instance_channels < channels:
            raise ValueError(f"in_ratio {in_ratio} leaves no channels for IN or BN of {channels}")
        self.IN = nn.InstanceNorm2d(self.instance_channels, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.instance_channels)

    def forward(self, x: Tensor) -> Tensor:
        by_instance, by_batch = torch.split(
            x, [self.instance_channels, x.shape[1] - self.instance_channels], dim=1
        )
        return torch.cat([self.IN(by_instance.contiguous()), self.BN(by_batch.contiguous())], 1)
