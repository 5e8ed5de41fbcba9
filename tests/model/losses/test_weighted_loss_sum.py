"""Weighted loss sum: hand-checked composition."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

from model.losses.loss_term import LossTerm
from model.losses.output_selectors import EMBEDDINGS, FEATURES, LOGITS
from model.losses.weighted_loss_sum import WeightedLossSum


class Output(NamedTuple):
    features: Tensor
    embeddings: Tensor
    logits: Tensor


class SumOfSource(nn.Module):
    """A loss whose value is easy to compute by hand: the sum of its input."""

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return x.sum()


def small_output() -> Output:
    return Output(
        features=torch.tensor([[1.0, 2.0]]),
        embeddings=torch.tensor([[10.0, 20.0]]),
        logits=torch.tensor([[100.0, 200.0]]),
    )


def test_total_is_weighted_sum_and_values_are_unweighted() -> None:
    loss = WeightedLossSum(
        [
            LossTerm("f", 2.0, SumOfSource(), FEATURES),
            LossTerm("e", 0.5, SumOfSource(), EMBEDDINGS),
            LossTerm("l", 0.01, SumOfSource(), LOGITS),
        ]
    )
    total, values = loss(small_output(), torch.tensor([0]))
    assert values == {"f": 3.0, "e": 30.0, "l": 300.0}
    assert total.item() == pytest.approx(2.0 * 3 + 0.5 * 30 + 0.01 * 300)


def test_sources_can_be_any_callable() -> None:
    loss = WeightedLossSum([LossTerm("g", 1.0, SumOfSource(), lambda o: o.features * 3)])
    total, values = loss(small_output(), torch.tensor([0]))
    assert total.item() == 9.0 and values == {"g": 9.0}


def test_gradient_flows_with_the_weights() -> None:
    features = torch.tensor([[1.0, 2.0]], requires_grad=True)
    output = Output(features, features * 10, features * 100)
    loss = WeightedLossSum(
        [LossTerm("f", 2.0, SumOfSource(), FEATURES), LossTerm("l", 0.5, SumOfSource(), LOGITS)]
    )
    loss(output, torch.tensor([0]))[0].backward()
    assert features.grad is not None
    assert features.grad.tolist() == [[52.0, 52.0]]  # 2·1 + 0.5·100


def test_duplicate_and_empty_terms_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        WeightedLossSum([LossTerm("a", 1, SumOfSource(), FEATURES)] * 2)
    with pytest.raises(ValueError, match="at least one"):
        WeightedLossSum([])
