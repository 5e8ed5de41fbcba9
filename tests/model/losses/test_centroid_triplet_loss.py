"""Centroid triplet loss against hand-derived values and a loop oracle over Python floats."""

from __future__ import annotations

import math
import random

import pytest
import torch

from model.losses.centroid_triplet_loss import CentroidTripletLoss


def dist_oracle(a: list[float], b: list[float]) -> float:
    return math.sqrt(max(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)), 1e-12))


def batch_hard_oracle(rows: list[list[float]], labels: list[int], margin: float) -> float:
    losses = []
    for a, la in zip(rows, labels, strict=True):
        d_ap = max(dist_oracle(a, r) for r, lr in zip(rows, labels, strict=True) if lr == la)
        d_an = min(dist_oracle(a, r) for r, lr in zip(rows, labels, strict=True) if lr != la)
        losses.append(max(0.0, d_ap - d_an + margin))
    return sum(losses) / len(losses)


def ctl_oracle(rows: list[list[float]], labels: list[int], margin: float) -> float:
    """The definition, literally: per position b, queries + leave-one-out centroids."""
    classes: dict[int, list[list[float]]] = {}
    for row, label in zip(rows, labels, strict=True):
        classes.setdefault(label, []).append(row)
    per_position = []
    for b in range(max(len(images) for images in classes.values())):
        usable = [c for c, images in classes.items() if len(images) > b and len(images) >= 2]
        if len(usable) < 2:
            continue
        points = [classes[c][b] for c in usable]
        for c in usable:
            others = [img for k, img in enumerate(classes[c]) if k != b]
            points.append([sum(col) / len(others) for col in zip(*others, strict=True)])
        per_position.append(batch_hard_oracle(points, usable + usable, margin))
    return sum(per_position) / len(per_position) if per_position else 0.0


def test_two_classes_of_two_in_one_dimension_by_hand() -> None:
    # Class 5: images 0, 2; class -3: images 3, 4; margin 0.5.
    # b = 0: queries 0 (class 5), 3 (class -3); centroids 2, 4.
    #   query 0:    d_ap = |0 - 2| = 2, d_an = min(|0-3|, |0-4|) = 3 -> relu(-0.5) = 0
    #   query 3:    d_ap = |3 - 4| = 1, d_an = min(|3-0|, |3-2|) = 1 -> 0.5
    #   centroid 2: d_ap = 2,           d_an = min(|2-3|, |2-4|) = 1 -> 1.5
    #   centroid 4: d_ap = 1,           d_an = min(|4-0|, |4-2|) = 2 -> 0
    #   mean 0.5.  b = 1: queries 2, 4, centroids 0, 3: the same four points, again 0.5.
    x = torch.tensor([[0.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    loss = CentroidTripletLoss(margin=0.5)(x, torch.tensor([5, 5, -3, -3]))
    assert loss.item() == pytest.approx(0.5, abs=1e-9)


def test_three_images_centroid_is_mean_of_the_other_two_by_hand() -> None:
    # Class 0: 0, 1, 2; class 1: 2.6, 2.8 (1-D), margin 0.5.
    # b = 0: q0 = 0, c0 = (1 + 2) / 2 = 1.5; q1 = 2.6, c1 = 2.8.
    #   q0: d_ap 1.5, d_an 2.6 -> 0;   q1: d_ap 0.2, d_an 1.1 -> 0
    #   c0: d_ap 1.5, d_an 1.1 -> 0.9; c1: d_ap 0.2, d_an 1.3 -> 0       mean 0.225
    # b = 1: q0 = 1, c0 = (0 + 2) / 2 = 1; q1 = 2.8, c1 = 2.6.
    #   q0, c0: d_ap ≈ 1e-6, d_an 1.6 -> 0; q1: d_ap 0.2, d_an 1.8 -> 0; c1: 0.2 vs 1.6 -> 0
    # b = 2: only class 0 has a third image -> position skipped.  Loss (0.225 + 0) / 2.
    x = torch.tensor([[0.0], [1.0], [2.0], [2.6], [2.8]], dtype=torch.float64)
    loss = CentroidTripletLoss(margin=0.5)(x, torch.tensor([0, 0, 0, 1, 1]))
    assert loss.item() == pytest.approx(0.1125, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_uneven_class_sizes_match_oracle(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = [11, 11, 11, 4, 4, 7]  # sizes 3, 2, 1
    x = torch.randn(len(labels), 3, generator=gen, dtype=torch.float64)
    expected = ctl_oracle(x.tolist(), labels, 0.5)
    loss = CentroidTripletLoss(0.5)(x, torch.tensor(labels))
    assert expected > 0.0
    assert loss.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_random_pk_and_ragged_batches_match_oracle(seed: int) -> None:
    rng = random.Random(seed)
    labels = [c for c in rng.sample(range(-50, 50), 6) for _ in range(rng.randint(1, 5))]
    rng.shuffle(labels)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), 8, generator=gen, dtype=torch.float64)
    expected = ctl_oracle(x.tolist(), labels, 0.3)
    assert CentroidTripletLoss(0.3)(x, torch.tensor(labels)).item() == pytest.approx(
        expected, abs=1e-9
    )


def test_single_image_classes_are_excluded() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    base = CentroidTripletLoss(0.5)(x, labels)
    # A lone image right on top of a query would be every row's hardest negative if it counted.
    lone = x[:1] + 1e-3
    with_lone = CentroidTripletLoss(0.5)(
        torch.cat([lone, x, lone * 2]), torch.cat([torch.tensor([9]), labels, torch.tensor([-4])])
    )
    assert with_lone.item() == pytest.approx(base.item(), abs=1e-12)


def test_order_invariance_under_interleaving_and_relabelling() -> None:
    gen = torch.Generator().manual_seed(2)
    labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    x = torch.randn(len(labels), 5, generator=gen, dtype=torch.float64)
    reference = CentroidTripletLoss(0.5)(x, torch.tensor(labels)).item()
    rng = random.Random(3)
    for _ in range(5):
        # Shuffle the class slots of the batch, then refill each class's slots with its images
        # in their original order (the within-class order defines the positions b).
        slots = list(labels)
        rng.shuffle(slots)
        queues = {c: [i for i, lab in enumerate(labels) if lab == c] for c in set(labels)}
        order = [queues[c].pop(0) for c in slots]
        rename = {0: 1000, 1: -7, 2: 3, 3: 0}
        shuffled = torch.tensor([rename[labels[i]] for i in order])
        loss = CentroidTripletLoss(0.5)(x[order], shuffled)
        assert loss.item() == pytest.approx(reference, abs=1e-12)


def test_within_class_order_decides_the_positions() -> None:
    # Not invariant to reordering *inside* a class: positions b pair up different queries.
    # (With 2 images per class it would be, see the hand case; so 3 images.)
    x = torch.tensor([[0.0], [1.0], [5.0], [0.9], [2.0], [3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    swapped = [0, 1, 2, 5, 4, 3]
    a = CentroidTripletLoss(0.5)(x, labels).item()
    b = CentroidTripletLoss(0.5)(x[swapped], labels).item()
    assert a == pytest.approx(ctl_oracle(x.tolist(), labels.tolist(), 0.5), abs=1e-9)
    assert b == pytest.approx(ctl_oracle(x[swapped].tolist(), labels.tolist(), 0.5), abs=1e-9)
    assert a != pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize(
    "labels",
    [[0, 1, 2, 3], [4, 4, 4, 4], [4, 4, 4, 9]],
    ids=["all-lone", "one-class", "one-class-plus-lone"],
)
def test_no_qualifying_position_is_zero_with_gradient(labels: list[int]) -> None:
    x = torch.randn(len(labels), 3, requires_grad=True)
    loss = CentroidTripletLoss()(x, torch.tensor(labels))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_empty_batch_is_zero() -> None:
    x = torch.zeros(0, 3, requires_grad=True)
    assert CentroidTripletLoss()(x, torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(5)
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 1, 0])
    x = torch.randn(len(labels), 3, generator=gen, dtype=torch.float64, requires_grad=True)
    loss_fn = CentroidTripletLoss(1.0)  # large margin: most hinges active, gradients non-trivial
    assert loss_fn(x, labels).item() > 0.0
    assert torch.autograd.gradcheck(lambda t: loss_fn(t, labels), (x,))


def test_float32_close_to_float64() -> None:
    gen = torch.Generator().manual_seed(6)
    labels = torch.arange(8).repeat_interleave(4)
    x = torch.randn(32, 64, generator=gen, dtype=torch.float64)
    loss64 = CentroidTripletLoss()(x, labels).item()
    loss32 = CentroidTripletLoss()(x.float(), labels).item()
    assert loss32 == pytest.approx(loss64, rel=1e-5)
