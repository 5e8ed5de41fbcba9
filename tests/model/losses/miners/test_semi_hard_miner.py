"""Semi-hard (TensorFlow-style) mining on points of the unit circle, fallback included."""

from __future__ import annotations

import pytest
import torch

from model.losses.distances.normalized_squared_euclidean_distance import (
    NormalizedSquaredEuclideanDistance,
    squared_distances_normalized,
)
from model.losses.miners.semi_hard_miner import SemiHardMiner
from model.losses.triplet_margin_loss import TripletMarginLoss

from ..circle_points import chord2, on_circle


def test_semi_hard_miner_including_tensorflow_fallback() -> None:
    # Class 0 at angles 0 and 0.5; class 1 at 0.2 and 0.3, both *between* them.
    emb = on_circle([0.0, 0.5, 0.2, 0.3])
    labels = torch.tensor([0, 0, 1, 1])
    d = squared_distances_normalized(emb)
    mined = SemiHardMiner()(d, labels)
    got = sorted(
        zip(mined.anchor.tolist(), mined.positive.tolist(), mined.negative.tolist(), strict=True)
    )
    # (0, 1): d_ap = chord(0.5); both negatives are nearer → fallback to the farthest, index 3.
    # (1, 0): likewise from angle 0.5 → farthest negative is index 2 (at 0.2).
    # (2, 3): d_ap = chord(0.1); negatives at chord(0.2), chord(0.3) → nearest beyond: index 0.
    # (3, 2): negatives at chord(0.3) (index 0), chord(0.2) (index 1) → index 1.
    assert got == [(0, 1, 3), (1, 0, 2), (2, 3, 0), (3, 2, 1)]
    margin = 0.2
    expected = (
        max(0.0, chord2(0.5) - chord2(0.3) + margin)
        + max(0.0, chord2(0.5) - chord2(0.3) + margin)
        + max(0.0, chord2(0.1) - chord2(0.2) + margin)
        + max(0.0, chord2(0.1) - chord2(0.2) + margin)
    ) / 4
    loss = TripletMarginLoss(margin, NormalizedSquaredEuclideanDistance(), SemiHardMiner())
    assert loss(emb, labels).item() == pytest.approx(expected, rel=1e-12)
