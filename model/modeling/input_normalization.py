"""Per-channel input normalisation as the network's first layer, so that the exported graph
takes plain [0, 1] pixels (the service never needs to know the backbone's statistics)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class InputNormalization(nn.Module):
    """``(N, C, H, W)`` float → ``(x - mean) / std`` per channel, same shape.

    ``mean`` and ``std`` are buffers (moved with the module, not trained) and not persistent:
    they belong to the architecture, so checkpoints neither carry nor override them.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"need as many positive stds as means, got {mean=} {std=}")
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), False
        )
        self.register_buffer(
            "std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), False
        )

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std
