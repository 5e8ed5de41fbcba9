"""Batch-hard mining: farthest positive, nearest negative, with and without the anchor among its
own positives, and the batched form over groups with absent rows."""

from __future__ import annotations

import torch

from model.losses.distances.normalized_squared_euclidean_distance import (
    squared_distances_normalized,
)
from model.losses.miners.batch_hard_miner import BatchHardMiner

from ..circle_points import on_circle


def test_batch_hard_miner_picks_farthest_positive_and_nearest_negative() -> None:
    emb = on_circle([0.0, 0.4, 1.0, 0.6, 2.5])
    labels = torch.tensor([0, 0, 0, 1, 1])
    mined = BatchHardMiner()(squared_distances_normalized(emb), labels)
    assert mined.anchor.tolist() == [0, 1, 2, 3, 4]
    assert mined.positive.tolist() == [2, 2, 0, 4, 3]
    assert mined.negative.tolist() == [3, 3, 3, 1, 2]


def test_anchor_as_positive_keeps_lone_anchors_with_themselves_as_positive() -> None:
    # Label 0: rows 0, 1; label 1: row 2 alone. Without self-positives row 2 is no anchor.
    dist = torch.tensor([[0.0, 0.2, 0.9], [0.2, 0.0, 0.4], [0.9, 0.4, 0.0]])
    labels = torch.tensor([0, 0, 1])
    plain = BatchHardMiner()(dist, labels)
    assert (plain.anchor.tolist(), plain.positive.tolist()) == ([0, 1], [1, 0])
    selfish = BatchHardMiner(anchor_as_positive=True)(dist, labels)
    assert selfish.anchor.tolist() == [0, 1, 2]
    assert selfish.positive.tolist() == [1, 0, 2]
    assert selfish.negative.tolist() == [2, 2, 1]


def test_hardest_over_groups_ignores_absent_rows() -> None:
    # Group 0: all four rows; group 1: row 3 absent, so row 2 (label 1) has no positive left
    # but row 3 cannot be anyone's negative or positive either.
    dist = torch.tensor(
        [[0.0, 0.1, 0.5, 0.3], [0.1, 0.0, 0.2, 0.6], [0.5, 0.2, 0.0, 0.7], [0.3, 0.6, 0.7, 0.0]]
    ).expand(2, 4, 4)
    labels = torch.tensor([0, 0, 1, 1]).expand(2, 4)
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    hardest = BatchHardMiner().hardest(dist, labels, valid)
    assert hardest.anchor.tolist() == [[True] * 4, [True, True, False, False]]
    assert hardest.positive[0].tolist() == [1, 0, 3, 2]
    assert hardest.negative[0].tolist() == [3, 2, 1, 0]
    assert hardest.positive[1, :2].tolist() == [1, 0]
    assert hardest.negative[1, :2].tolist() == [2, 2]
