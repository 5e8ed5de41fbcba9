"""Squared Euclidean distance between L2-normalised embeddings, ``2 - 2 cos`` in [0, 4], as
Taha et al.'s public ranking-regularizer code (and FaceNet) use it."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


def squared_distances_normalized(embeddings: Tensor) -> Tensor:
    """float (N, D) -> float (N, N): ``||x̂_i - x̂_j||²`` of the L2-normalised rows, exact 0 on
    the diagonal and clamped at 0 elsewhere (rounding can make ``2 - 2 cos`` negative)."""
    x = F.normalize(embeddings, dim=1)
    dist = (2.0 - 2.0 * x @ x.T).clamp_min(0.0)
    return dist.fill_diagonal_(0.0)


@dataclass(frozen=True)
class NormalizedSquaredEuclideanDistance:
    """``(embeddings (N, D) float, any norm) -> (N, N)``: :func:`squared_distances_normalized`."""

    def __call__(self, embeddings: Tensor) -> Tensor:
        return squared_distances_normalized(embeddings)
