"""Batch-hard mining (Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017): per anchor, its farthest positive and its nearest negative.

Two conventions exist for who counts as an anchor's positive, and both are in use here:

* ``anchor_as_positive=True``, reid-strong-baseline's (the CTL reference): the anchor itself
  is among its positives, so a sample alone in its class is still an anchor, with
  ``d_ap = d(a, a)`` (≈ 1e-6 for its Euclidean distance).
* ``anchor_as_positive=False``, pytorch-metric-learning's and Taha et al.'s: only other rows
  of the class; anchors without one yield no triplet.

Anchors without any negative never yield a triplet. Ties go to the lowest row index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from model.losses.miners.miner import Triplets


class HardestPairs(NamedTuple):
    """Per row of B groups of M: ``positive``, ``negative`` int64 (B, M) column indices of its
    hardest positive and negative (meaningless where ``anchor`` is False); ``anchor`` bool
    (B, M), whether the row has both."""

    positive: Tensor
    negative: Tensor
    anchor: Tensor


@dataclass(frozen=True)
class BatchHardMiner:
    """``miner(dist (N, N), labels (N,)) -> Triplets``, one triplet per usable anchor, in row
    order. :meth:`hardest` is the same choice over B independent groups with absent rows."""

    anchor_as_positive: bool = False

    def hardest(self, dist: Tensor, labels: Tensor, valid: Tensor) -> HardestPairs:
        """``dist`` float (B, M, M), ``labels`` integer (B, M), ``valid`` bool (B, M): False
        for rows that take no part (neither as anchor, positive nor negative)."""
        same = labels[:, :, None] == labels[:, None, :]
        both = valid[:, :, None] & valid[:, None, :]
        positive = same & both
        if not self.anchor_as_positive:
            positive &= ~torch.eye(same.shape[-1], dtype=torch.bool, device=same.device)
        negative = ~same & both
        d = dist.detach()
        inf = torch.tensor(float("inf"), dtype=d.dtype, device=d.device)
        hardest_positive = torch.where(positive, d, -inf).argmax(dim=2)
        hardest_negative = torch.where(negative, d, inf).argmin(dim=2)
        anchor = valid & positive.any(dim=2) & negative.any(dim=2)
        return HardestPairs(hardest_positive, hardest_negative, anchor)

    def __call__(self, dist: Tensor, labels: Tensor) -> Triplets:
        valid = torch.ones_like(labels, dtype=torch.bool)
        pairs = self.hardest(dist[None], labels[None], valid[None])
        a = torch.nonzero(pairs.anchor[0]).flatten()
        return Triplets(a, pairs.positive[0][a], pairs.negative[0][a])
