"""Semi-hard mining as TensorFlow's ``triplet_semihard_loss`` (FaceNet; the miner of Taha et
al.'s ranking regularizer, WACV 2020).

One triplet per anchor-positive pair (a ≠ p); its negative is the one with the smallest
distance strictly greater than ``d(a, p)``; if there is none (common in small P×K batches, the
authors' is 8 classes × 4 images), TensorFlow's fallback: the negative with the *largest*
distance to the anchor. Pairs whose anchor has no negative yield no triplet (TensorFlow would
still count them, against a "negative" at distance 0, the anchor itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from model.losses.miners.miner import Triplets


@dataclass(frozen=True)
class SemiHardMiner:
    """``miner(dist (N, N) float, labels (N,) integer) -> Triplets``, pairs in row-major
    (anchor, positive) order."""

    def __call__(self, dist: Tensor, labels: Tensor) -> Triplets:
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
        negative = ~same
        positive = same & ~eye & negative.any(dim=1, keepdim=True)
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
