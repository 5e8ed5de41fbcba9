"""Batch-hard triplet loss against a loop oracle over Python floats, hand-derived values and
pytorch-metric-learning's batch-hard triplet loss."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from pytorch_metric_learning.reducers import MeanReducer

from model.losses.batch_hard_triplet_loss import (
    BatchHardTripletLoss,
    batch_hard_triplet,
    euclidean_distances,
)


def dist_oracle(a: list[float], b: list[float]) -> float:
    return math.sqrt(max(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)), 1e-12))


def batch_hard_oracle(rows: list[list[float]], labels: list[int], margin: float) -> float:
    """Per anchor with a negative: farthest same-label row (itself included), nearest other."""
    losses = []
    for a, la in zip(rows, labels, strict=True):
        negatives = [dist_oracle(a, rows[j]) for j in range(len(rows)) if labels[j] != la]
        if not negatives:
            continue
        d_ap = max(dist_oracle(a, rows[j]) for j in range(len(rows)) if labels[j] == la)
        losses.append(max(0.0, d_ap - min(negatives) + margin))
    return sum(losses) / len(losses) if losses else 0.0


def test_hand_computed_one_dimensional() -> None:
    # Rows 0, 2 (label 8) and 3, 4 (label -1), margin 0.5:
    # anchor 0: d_ap 2, d_an 3 -> 0;  anchor 2: d_ap 2, d_an 1 -> 1.5;
    # anchor 3: d_ap 1, d_an 1 -> 0.5; anchor 4: d_ap 1, d_an 2 -> 0.  Mean 0.5.
    x = torch.tensor([[0.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    loss = BatchHardTripletLoss(margin=0.5)(x, torch.tensor([8, 8, -1, -1]))
    assert loss.item() == pytest.approx(0.5, abs=1e-9)


def test_lone_sample_positive_is_sqrt_of_the_floor() -> None:
    # Anchor 0 alone in its class: d_ap = sqrt(1e-12) = 1e-6, d_an = 0.3 -> 0.5 + 1e-6 - 0.3.
    # Anchors 1 and 2: d_ap 0.1, d_an 0.3 and 0.4 -> 0.3 and 0.2.
    x = torch.tensor([[0.0], [0.3], [0.4]], dtype=torch.float64)
    loss = BatchHardTripletLoss(margin=0.5)(x, torch.tensor([1, 2, 2]))
    assert loss.item() == pytest.approx((0.2 + 1e-6 + 0.3 + 0.2) / 3.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_oracle_with_uneven_classes_and_lone_samples(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([5, -2, 5, 40, 5, -2, 7, 40, 40, 9])  # 7 and 9 are lone samples
    x = torch.randn(len(labels), 6, generator=gen, dtype=torch.float64)
    expected = batch_hard_oracle(x.tolist(), labels.tolist(), 0.5)
    assert BatchHardTripletLoss(0.5)(x, labels).item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_matches_pytorch_metric_learning_batch_hard(seed: int) -> None:
    # PML's miner drops the anchor itself from the positives, so compare on batches where every
    # class has at least two images (then the farthest positive is never the anchor).
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=gen)]
    x = torch.randn(24, 16, generator=gen, dtype=torch.float64)
    plain = LpDistance(normalize_embeddings=False)  # both default to normalised embeddings
    pml = TripletMarginLoss(margin=0.5, distance=plain, reducer=MeanReducer())
    theirs = pml(x, labels, BatchHardMiner(distance=plain)(x, labels))
    ours = BatchHardTripletLoss(0.5)(x, labels)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-9)


def test_single_class_batch_is_zero_with_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    loss = BatchHardTripletLoss()(x, torch.tensor([3, 3, 3, 3]))
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_pure_function_on_a_given_distance_matrix() -> None:
    # Label 0: rows 0, 1; label 1: row 2. Anchor 0: d_ap 0.2, d_an 0.9 -> 0; anchor 1:
    # d_ap 0.2, d_an 0.4 -> 0.3; anchor 2: d_ap = its own "distance" 0.0, d_an 0.4 -> 0.1.
    dist = torch.tensor([[0.0, 0.2, 0.9], [0.2, 0.0, 0.4], [0.9, 0.4, 0.0]])
    loss = batch_hard_triplet(dist, torch.tensor([0, 0, 1]), margin=0.5)
    assert loss.item() == pytest.approx(0.4 / 3.0, abs=1e-7)


def test_euclidean_distances_by_hand_and_floor() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    d = euclidean_distances(x, x)
    assert d.flatten().tolist() == pytest.approx([1e-6, 5.0, 5.0, 1e-6], abs=1e-12)


def test_half_precision_input_gives_finite_float32_distances() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float16)
    d = euclidean_distances(x, x)
    assert d.dtype == torch.float32
    assert d[0, 1].item() == pytest.approx(5.0) and d[0, 0].item() > 0.0


def test_gradient_by_hand() -> None:
    # 1-D rows x0 = 0, x1 = 1 (label 0), x2 = 1.2 (label 1); all three hinges are active:
    # anchor 0: |x1 - x0| - |x2 - x0| (0.3 + ...): d/dx = (0, +1, -1)
    # anchor 1: |x1 - x0| - |x2 - x1| (1.3):       d/dx = (-1, +2, -1)
    # anchor 2: 1e-6 (clamped, no gradient) - |x2 - x1|: d/dx = (0, +1, -1)
    # Sum / 3 anchors.
    x = torch.tensor([[0.0], [1.0], [1.2]], dtype=torch.float64, requires_grad=True)
    BatchHardTripletLoss(0.5)(x, torch.tensor([0, 0, 1])).backward()
    assert x.grad is not None
    assert x.grad.flatten().tolist() == pytest.approx([-1.0 / 3.0, 4.0 / 3.0, -1.0])
