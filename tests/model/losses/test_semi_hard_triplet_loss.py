"""Triplet loss with semi-hard (TensorFlow-style) and batch-hard mining, against loop oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.losses.semi_hard_triplet_loss import (
    MINERS,
    TripletLossWithMining,
    mine_batch_hard,
    mine_semi_hard,
    squared_distances_normalized,
)


def on_circle(angles: list[float]) -> torch.Tensor:
    return torch.tensor([[math.cos(t), math.sin(t)] for t in angles], dtype=torch.float64)


def chord2(dt: float) -> float:
    """Squared distance between unit vectors ``dt`` radians apart."""
    return 2.0 - 2.0 * math.cos(dt)


def sq_dist_oracle(emb: np.ndarray) -> np.ndarray:
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(x)
    return np.array([[float(np.sum((x[i] - x[j]) ** 2)) for j in range(n)] for i in range(n)])


def semi_hard_oracle(emb: np.ndarray, labels: list[int], margin: float) -> float:
    """tfa.losses.triplet_semihard_loss on squared distances, re-derived as plain loops."""
    d = sq_dist_oracle(emb)
    n = len(labels)
    losses = []
    for a in range(n):
        negs = [k for k in range(n) if labels[k] != labels[a]]
        if not negs:
            continue
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            outside = [d[a][k] for k in negs if d[a][k] > d[a][p]]
            d_an = min(outside) if outside else max(d[a][k] for k in negs)
            losses.append(max(0.0, d[a][p] - d_an + margin))
    return sum(losses) / len(losses)


def batch_hard_oracle(emb: np.ndarray, labels: list[int], margin: float) -> float:
    d = sq_dist_oracle(emb)
    n = len(labels)
    losses = []
    for a in range(n):
        pos = [d[a][k] for k in range(n) if k != a and labels[k] == labels[a]]
        neg = [d[a][k] for k in range(n) if labels[k] != labels[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(losses) / len(losses)


def test_distance_is_squared_euclidean_of_normalised_embeddings() -> None:
    emb = on_circle([0.0, 0.5, 2.0]) * torch.tensor([[1.0], [3.0], [0.2]], dtype=torch.float64)
    d = squared_distances_normalized(emb)
    assert d[0, 1].item() == pytest.approx(chord2(0.5))
    assert d[1, 2].item() == pytest.approx(chord2(1.5))
    assert torch.all(d.diagonal() == 0)


def test_semi_hard_miner_including_tensorflow_fallback() -> None:
    # Class 0 at angles 0 and 0.5; class 1 at 0.2 and 0.3, both *between* them.
    emb = on_circle([0.0, 0.5, 0.2, 0.3])
    labels = torch.tensor([0, 0, 1, 1])
    d = squared_distances_normalized(emb)
    mined = mine_semi_hard(d, labels)
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
    loss = TripletLossWithMining(margin=margin, mining="semi_hard")
    assert loss(emb, labels).item() == pytest.approx(expected, rel=1e-12)


def test_batch_hard_miner_picks_farthest_positive_and_nearest_negative() -> None:
    emb = on_circle([0.0, 0.4, 1.0, 0.6, 2.5])
    labels = torch.tensor([0, 0, 0, 1, 1])
    mined = mine_batch_hard(squared_distances_normalized(emb), labels)
    assert mined.anchor.tolist() == [0, 1, 2, 3, 4]
    assert mined.positive.tolist() == [2, 2, 0, 4, 3]
    assert mined.negative.tolist() == [3, 3, 3, 1, 2]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mining", ["semi_hard", "batch_hard"])
def test_matches_loop_oracle_on_pk_batches(seed: int, mining: str) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(3)[torch.randperm(12, generator=gen)]
    # Class-dependent offset so some pairs are easy, some semi-hard, some without semi-hard.
    emb = (
        torch.randn(12, 6, generator=gen, dtype=torch.float64)
        + 0.8 * torch.nn.functional.one_hot(labels, 6).double()
    )
    oracle = {"semi_hard": semi_hard_oracle, "batch_hard": batch_hard_oracle}[mining]
    want = oracle(emb.numpy(), labels.tolist(), 0.2)
    got = TripletLossWithMining(margin=0.2, mining=mining)(emb, labels).item()
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_anchors_without_positive_or_negative_are_skipped_and_empty_batch_is_zero() -> None:
    emb = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    single_class = torch.zeros(5, dtype=torch.int64)
    for mining in MINERS:
        value = TripletLossWithMining(mining=mining)(emb, single_class)
        assert value.item() == 0.0
        value.backward()  # still part of the graph
    # Sample 4 is a singleton class: it is a negative for others, never an anchor.
    labels = torch.tensor([0, 0, 1, 1, 2])
    assert 4 not in mine_semi_hard(squared_distances_normalized(emb), labels).anchor.tolist()
    assert 4 not in mine_batch_hard(squared_distances_normalized(emb), labels).anchor.tolist()


def test_unknown_mining_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mining"):
        TripletLossWithMining(mining="hardest_of_all")


def test_gradient_flows_through_mined_distances() -> None:
    emb = on_circle([0.0, 0.5, 0.2, 0.3]).requires_grad_(True)
    TripletLossWithMining(mining="semi_hard")(emb, torch.tensor([0, 0, 1, 1])).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
