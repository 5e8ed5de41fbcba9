"""What a triplet loss needs from a miner: index triplets into the batch, chosen from the
pairwise distances."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from torch import Tensor


class Triplets(NamedTuple):
    """Index triplets, each int64 (T,), into the batch: anchor, positive, negative. T = 0 when
    the batch has no usable anchor."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor


class Miner(Protocol):
    """``miner(dist (N, N) float, labels (N,) integer, any values) -> Triplets``. Mining does
    not backpropagate: only the loss on the mined distances does."""

    def __call__(self, dist: Tensor, labels: Tensor) -> Triplets: ...
