"""What a triplet loss needs from a distance: the pairwise distance matrix of a batch."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Distance(Protocol):
    """``distance(embeddings (N, D) float) -> (N, N) float``, non-negative, differentiable."""

    def __call__(self, embeddings: Tensor) -> Tensor: ...
