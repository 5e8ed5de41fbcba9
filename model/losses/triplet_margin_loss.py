"""The triplet margin loss, ``mean over mined triplets of relu(d(a, p) - d(a, n) + margin)``,
with its distance and its miner given to it (pytorch-metric-learning's design).

The two forms this project trains with:

* CTL's instance triplet, as reid-strong-baseline: ``TripletMarginLoss(0.5,
  EuclideanDistance(), BatchHardMiner(anchor_as_positive=True))`` on the raw pre-BN feature.
* Taha et al.'s ranking regularizer: ``TripletMarginLoss(0.2,
  NormalizedSquaredEuclideanDistance(), BatchHardMiner())`` (or ``SemiHardMiner()``, the
  paper's method; the authors' own results show batch-hard beating it on all five datasets).

A batch without any triplet gives a zero loss that still backpropagates, so a training step
never crashes on an odd batch.
"""

from __future__ import annotations

from torch import Tensor, nn

from model.losses.distances.distance import Distance
from model.losses.miners.miner import Miner, Triplets


def triplet_margin_loss(dist: Tensor, triplets: Triplets, margin: float) -> Tensor:
    """``mean relu(dist[a, p] - dist[a, n] + margin)`` over the triplets, from a precomputed
    ``dist`` float (N, N); float scalar, ``dist.sum() * 0`` (differentiable) when T = 0."""
    if triplets.anchor.numel() == 0:
        return dist.sum() * 0.0
    d_ap = dist[triplets.anchor, triplets.positive]
    d_an = dist[triplets.anchor, triplets.negative]
    return (d_ap - d_an + margin).relu().mean()


class TripletMarginLoss(nn.Module):
    """``loss(embeddings (N, D) float, labels (N,) integer, any values) -> scalar``."""

    def __init__(self, margin: float, distance: Distance, miner: Miner) -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance
        self.miner = miner

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = self.distance(embeddings)
        return triplet_margin_loss(dist, self.miner(dist, labels), self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance}, miner={self.miner}"
