"""Ranking-regularizer recipe: CE on logits + λ · triplet on the raw embedding head, checked
against numpy oracles on a fixed NetOutput."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.losses.recipes.ranking_regularizer_recipe import ranking_regularizer_recipe
from model.modeling.net_output import NetOutput

from ..circle_points import chord2, on_circle


def cross_entropy_oracle(logits: np.ndarray, labels: list[int]) -> float:
    return float(
        np.mean([np.log(np.exp(row).sum()) - row[y] for row, y in zip(logits, labels, strict=True)])
    )


# Class 0 at angles 0 and 0.5, class 1 at 0.2 and 0.3 (between them): see the miner tests.
ANGLES = [0.0, 0.5, 0.2, 0.3]
LABELS = torch.tensor([0, 0, 1, 1])
LOGITS = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-0.3, 1.2], [0.0, 3.0]], dtype=torch.float64)
# Batch-hard: each anchor's only positive; nearest negatives at 0.2 (from 0 and from 0.5) and
# at 0.2 / 0.2 (from 0.2 to 0, from 0.3 to 0.5).
BATCH_HARD = (
    2 * max(0.0, chord2(0.5) - chord2(0.2) + 0.2) + 2 * max(0.0, chord2(0.1) - chord2(0.2) + 0.2)
) / 4
SEMI_HARD = (
    2 * max(0.0, chord2(0.5) - chord2(0.3) + 0.2) + 2 * max(0.0, chord2(0.1) - chord2(0.2) + 0.2)
) / 4


def output() -> NetOutput:
    # Raw head output with varied norms; `embeddings` deliberately wrong: must not be used.
    features = on_circle(ANGLES) * torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=torch.float64)
    return NetOutput(features=features, embeddings=torch.zeros_like(features), logits=LOGITS)


@pytest.mark.parametrize(
    ("mining", "triplet", "lam"), [("batch_hard", BATCH_HARD, 1.0), ("semi_hard", SEMI_HARD, 0.5)]
)
def test_value_is_cross_entropy_plus_lambda_triplet(
    mining: str, triplet: float, lam: float
) -> None:
    recipe = ranking_regularizer_recipe(2, lam=lam, mining=mining)
    ce = cross_entropy_oracle(LOGITS.numpy(), LABELS.tolist())
    total, values = recipe(output(), LABELS)
    assert total.item() == pytest.approx(ce + lam * triplet, rel=1e-10)
    assert values == pytest.approx({"cross_entropy": ce, "triplet": triplet}, rel=1e-10)


def test_defaults_are_batch_hard_lambda_one_margin_point_two() -> None:
    want = cross_entropy_oracle(LOGITS.numpy(), LABELS.tolist()) + BATCH_HARD
    assert ranking_regularizer_recipe(2)(output(), LABELS)[0].item() == pytest.approx(want)


def test_has_no_proxies_and_refuses_unknown_mining() -> None:
    assert ranking_regularizer_recipe(2).param_groups(base_lr=1e-3) == []
    with pytest.raises(ValueError, match="unknown mining"):
        ranking_regularizer_recipe(2, mining="easy")
    with pytest.raises(ValueError, match="at least 2 classes"):
        ranking_regularizer_recipe(1)
