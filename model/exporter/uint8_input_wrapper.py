"""The graph boundary of every exported embedder: ``uint8`` pixels in, embeddings out.

Scaling to ``[0, 1]`` happens here and mean/std normalisation inside the network, so both travel
inside the ONNX graph and clients only resize and lay out pixels (see ``PreprocessSpec``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class Embedder(Protocol):
    """A trained network: ``embed(x (N, 3, H, W) float in [0, 1]) -> (N, D)``."""

    embedding_dim: int

    def embed(self, x: Tensor) -> Tensor: ...


class UInt8InputWrapper(nn.Module):
    """``(N, 3, H, W)`` uint8 RGB → ``(N, D)`` float32 via ``net.embed(x / 255)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not hasattr(net, "embed"):
            raise TypeError(f"{type(net).__name__} has no embed() method")
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        x = images.to(torch.float32) / 255.0
        out: Tensor = self.net.embed(x)  # type: ignore[operator]
        return out
