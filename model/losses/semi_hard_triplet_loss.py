"""Triplet loss with a choice of miner, as in Taha, Chen, Shrivastava and Davis ("Boosting
Standard Classification Architectures Through a Ranking Regularizer", WACV 2020).

Distance: squared Euclidean between L2-normalised embeddings (``2 - 2 cos``, in [0, 4]), as the
authors' public code does. Loss: ``mean over mined triplets of relu(d(a, p) - d(a, n) + margin)``.

Miners (each ``(dist (N, N), labels (N,)) -> Triplets``):

* ``"semi_hard"`` (the paper's method), mined like TensorFlow's ``triplet_semihard_loss``: one
  triplet per anchor-positive pair (a ≠ p); its negative is the one with the smallest distance
  strictly greater than ``d(a, p)``; if there is none (common in small P×K batches, the
  authors' is 8 classes × 4 images), TensorFlow's fallback: the negative with the *largest*
  distance to the anchor. The mean is over all anchor-positive pairs, easy ones included.
* ``"batch_hard"`` (Hermans et al., 2017): one triplet per anchor, its farthest positive and
  nearest negative; the best miner on all five of Taha et al.'s datasets.

Anchors with no positive or no negative in the batch yield no triplet. (TensorFlow would still
count pairs of an anchor without negatives, against a "negative" at distance 0, the anchor
itself; we drop them.) A batch without any triplet gives a zero loss that still backpropagates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The authors' code and the FaceNet paper both use 0.2 with unit-norm embeddings.
DEFAULT_MARGIN = 0.2


class Triplets(NamedTuple):
    """Index triplets, each int64 (T,), into the batch: anchor, positive, negative."""

    anchor: Tensor
    positive: Tensor
    negative: Tensor


Miner = Callable[[Tensor, Tensor], Triplets]


def squared_distances_normalized(embeddings: Tensor) -> Tensor:
    """float (N, D) -> float (N, N): ``||x̂_i - x̂_j||²`` of the L2-normalised rows, exact 0 on
    the diagonal and clamped at 0 elsewhere (rounding can make ``2 - 2 cos`` negative)."""
    x = F.normalize(embeddings, dim=1)
    dist = (2.0 - 2.0 * x @ x.T).clamp_min(0.0)
    return dist.fill_diagonal_(0.0)


def _pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """labels (N,) -> (positive (N, N) bool without the diagonal, negative (N, N) bool)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def mine_semi_hard(dist: Tensor, labels: Tensor) -> Triplets:
    """TensorFlow-style semi-hard mining: one triplet per anchor-positive pair.

    ``dist`` float (N, N), ``labels`` int64 (N,). Pairs whose anchor has no negative are skipped.
    """
    positive, negative = _pair_masks(labels)
    positive &= negative.any(dim=1, keepdim=True)
    a, p = torch.nonzero(positive, as_tuple=True)
    d = dist.detach()
    d_an = d[a]  # (T, N): every candidate negative's distance to the pair's anchor
    neg = negative[a]
    semi_hard = neg & (d_an > d[a, p][:, None])
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    nearest_outside = torch.where(semi_hard, d_an, inf).argmin(dim=1)
    farthest = torch.where(neg, d_an, -inf).argmax(dim=1)
    n = torch.where(semi_hard.any(dim=1), nearest_outside, farthest)
    return Triplets(a, p, n)


def mine_batch_hard(dist: Tensor, labels: Tensor) -> Triplets:
    """Batch-hard mining: per anchor with a positive and a negative, the farthest positive and
    the nearest negative. ``dist`` float (N, N), ``labels`` int64 (N,)."""
    positive, negative = _pair_masks(labels)
    d = dist.detach()
    inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
    valid = positive.any(dim=1) & negative.any(dim=1)
    a = torch.nonzero(valid).flatten()
    p = torch.where(positive, d, -inf).argmax(dim=1)[a]
    n = torch.where(negative, d, inf).argmin(dim=1)[a]
    return Triplets(a, p, n)


MINERS: dict[str, Miner] = {"semi_hard": mine_semi_hard, "batch_hard": mine_batch_hard}


def triplet_loss(dist: Tensor, triplets: Triplets, margin: float) -> Tensor:
    """``mean relu(dist[a, p] - dist[a, n] + margin)`` over the triplets; float scalar."""
    if triplets.anchor.numel() == 0:
        return dist.sum() * 0.0
    d_ap = dist[triplets.anchor, triplets.positive]
    d_an = dist[triplets.anchor, triplets.negative]
    return F.relu(d_ap - d_an + margin).mean()


class TripletLossWithMining(nn.Module):
    """``forward(embeddings (N, D) float, any norm; labels (N,) int64) -> scalar``.

    ``mining`` is a key of :data:`MINERS`.
    """

    def __init__(self, margin: float = DEFAULT_MARGIN, mining: str = "semi_hard") -> None:
        super().__init__()
        if mining not in MINERS:
            raise ValueError(f"unknown mining {mining!r}; choose from {sorted(MINERS)}")
        self.margin = margin
        self.mining = mining
        self._miner = MINERS[mining]

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        dist = squared_distances_normalized(embeddings)
        return triplet_loss(dist, self._miner(dist, labels), self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}"
