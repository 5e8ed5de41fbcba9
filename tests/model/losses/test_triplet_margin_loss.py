"""The triplet margin loss in both forms trained here, against loop oracles, hand-derived values
and pytorch-metric-learning:

* CTL's instance triplet: plain Euclidean distance, batch-hard with the anchor among its own
  positives (reid-strong-baseline);
* the ranking regularizer's: squared distance of normalised embeddings, batch-hard (anchor
  excluded) or TensorFlow-style semi-hard.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss as PMLTripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner as PMLBatchHardMiner
from pytorch_metric_learning.reducers import MeanReducer

from model.losses.distances.euclidean_distance import EuclideanDistance
from model.losses.distances.normalized_squared_euclidean_distance import (
    NormalizedSquaredEuclideanDistance,
)
from model.losses.miners.batch_hard_miner import BatchHardMiner
from model.losses.miners.miner import Miner
from model.losses.miners.semi_hard_miner import SemiHardMiner
from model.losses.triplet_margin_loss import TripletMarginLoss, triplet_margin_loss

from .circle_points import on_circle

MINERS: dict[str, Miner] = {"semi_hard": SemiHardMiner(), "batch_hard": BatchHardMiner()}


def ctl_triplet(margin: float = 0.5) -> TripletMarginLoss:
    """The CTL recipe's instance triplet loss (reid-strong-baseline's form)."""
    return TripletMarginLoss(margin, EuclideanDistance(), BatchHardMiner(anchor_as_positive=True))


def normalized_triplet(margin: float = 0.2, mining: str = "semi_hard") -> TripletMarginLoss:
    """The ranking regularizer's triplet loss."""
    return TripletMarginLoss(margin, NormalizedSquaredEuclideanDistance(), MINERS[mining])


# --- CTL's form: plain Euclidean, batch-hard, anchor among its positives ---------------------


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
    loss = ctl_triplet(margin=0.5)(x, torch.tensor([8, 8, -1, -1]))
    assert loss.item() == pytest.approx(0.5, abs=1e-9)


def test_lone_sample_positive_is_sqrt_of_the_floor() -> None:
    # Anchor 0 alone in its class: d_ap = sqrt(1e-12) = 1e-6, d_an = 0.3 -> 0.5 + 1e-6 - 0.3.
    # Anchors 1 and 2: d_ap 0.1, d_an 0.3 and 0.4 -> 0.3 and 0.2.
    x = torch.tensor([[0.0], [0.3], [0.4]], dtype=torch.float64)
    loss = ctl_triplet(margin=0.5)(x, torch.tensor([1, 2, 2]))
    assert loss.item() == pytest.approx((0.2 + 1e-6 + 0.3 + 0.2) / 3.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_matches_loop_oracle_with_uneven_classes_and_lone_samples(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([5, -2, 5, 40, 5, -2, 7, 40, 40, 9])  # 7 and 9 are lone samples
    x = torch.randn(len(labels), 6, generator=gen, dtype=torch.float64)
    expected = batch_hard_oracle(x.tolist(), labels.tolist(), 0.5)
    assert ctl_triplet(0.5)(x, labels).item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_matches_pytorch_metric_learning_batch_hard(seed: int) -> None:
    # PML's miner drops the anchor itself from the positives, so compare on batches where every
    # class has at least two images (then the farthest positive is never the anchor).
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(6).repeat_interleave(4)[torch.randperm(24, generator=gen)]
    x = torch.randn(24, 16, generator=gen, dtype=torch.float64)
    plain = LpDistance(normalize_embeddings=False)  # both default to normalised embeddings
    pml = PMLTripletMarginLoss(margin=0.5, distance=plain, reducer=MeanReducer())
    theirs = pml(x, labels, PMLBatchHardMiner(distance=plain)(x, labels))
    ours = ctl_triplet(0.5)(x, labels)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-9)


def test_single_class_batch_is_zero_with_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    loss = ctl_triplet()(x, torch.tensor([3, 3, 3, 3]))
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_pure_function_on_a_given_distance_matrix() -> None:
    # Label 0: rows 0, 1; label 1: row 2. Anchor 0: d_ap 0.2, d_an 0.9 -> 0; anchor 1:
    # d_ap 0.2, d_an 0.4 -> 0.3; anchor 2: d_ap = its own "distance" 0.0, d_an 0.4 -> 0.1.
    dist = torch.tensor([[0.0, 0.2, 0.9], [0.2, 0.0, 0.4], [0.9, 0.4, 0.0]])
    labels = torch.tensor([0, 0, 1])
    mined = BatchHardMiner(anchor_as_positive=True)(dist, labels)
    loss = triplet_margin_loss(dist, mined, margin=0.5)
    assert loss.item() == pytest.approx(0.4 / 3.0, abs=1e-7)


def test_gradient_by_hand() -> None:
    # 1-D rows x0 = 0, x1 = 1 (label 0), x2 = 1.2 (label 1); all three hinges are active:
    # anchor 0: |x1 - x0| - |x2 - x0| (0.3 + ...): d/dx = (0, +1, -1)
    # anchor 1: |x1 - x0| - |x2 - x1| (1.3):       d/dx = (-1, +2, -1)
    # anchor 2: 1e-6 (clamped, no gradient) - |x2 - x1|: d/dx = (0, +1, -1)
    # Sum / 3 anchors.
    x = torch.tensor([[0.0], [1.0], [1.2]], dtype=torch.float64, requires_grad=True)
    ctl_triplet(0.5)(x, torch.tensor([0, 0, 1])).backward()
    assert x.grad is not None
    assert x.grad.flatten().tolist() == pytest.approx([-1.0 / 3.0, 4.0 / 3.0, -1.0])


# --- the ranking regularizer's form: normalised squared distance -----------------------------


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


def normalized_batch_hard_oracle(emb: np.ndarray, labels: list[int], margin: float) -> float:
    d = sq_dist_oracle(emb)
    n = len(labels)
    losses = []
    for a in range(n):
        pos = [d[a][k] for k in range(n) if k != a and labels[k] == labels[a]]
        neg = [d[a][k] for k in range(n) if labels[k] != labels[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(losses) / len(losses)


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
    oracle = {"semi_hard": semi_hard_oracle, "batch_hard": normalized_batch_hard_oracle}[mining]
    want = oracle(emb.numpy(), labels.tolist(), 0.2)
    got = normalized_triplet(margin=0.2, mining=mining)(emb, labels).item()
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_anchors_without_positive_or_negative_are_skipped_and_empty_batch_is_zero() -> None:
    emb = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    single_class = torch.zeros(5, dtype=torch.int64)
    for mining in MINERS:
        value = normalized_triplet(mining=mining)(emb, single_class)
        assert value.item() == 0.0
        value.backward()  # still part of the graph
    # Sample 4 is a singleton class: it is a negative for others, never an anchor.
    labels = torch.tensor([0, 0, 1, 1, 2])
    dist = NormalizedSquaredEuclideanDistance()(emb)
    assert 4 not in SemiHardMiner()(dist, labels).anchor.tolist()
    assert 4 not in BatchHardMiner()(dist, labels).anchor.tolist()


def test_gradient_flows_through_mined_distances() -> None:
    emb = on_circle([0.0, 0.5, 0.2, 0.3]).requires_grad_(True)
    normalized_triplet(mining="semi_hard")(emb, torch.tensor([0, 0, 1, 1])).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
