"""Weighted loss sum: hand-checked composition, and its terms' optimiser needs gathered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

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


# --- the terms' optimiser needs, together ----------------------------------------------------


class Scaled(nn.Module):
    """A loss with one learnable scale."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return self.scale * x.sum()


class RecordingNeeds:
    """Needs that record what the sum asks of them."""

    def __init__(self, param: nn.Parameter, lr_factor: float) -> None:
        self.param, self.lr_factor = param, lr_factor
        self.weights: list[float] = []
        self.state: dict[str, Any] = {"steps": 0}

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        return [{"params": [self.param], "lr": base_lr * self.lr_factor}]

    def after_backward(self, scaler: torch.amp.GradScaler, loss_weight: float) -> None:
        self.weights.append(loss_weight)

    def optimizer_state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_optimizer_state_dict(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)


def sum_with_needs() -> tuple[WeightedLossSum, Scaled, Scaled, RecordingNeeds]:
    undeclared, declared = Scaled(), Scaled()
    needs = RecordingNeeds(declared.scale, lr_factor=10.0)
    loss = WeightedLossSum(
        [
            LossTerm("plain", 1.0, SumOfSource(), FEATURES),
            LossTerm("undeclared", 0.5, undeclared, FEATURES),
            LossTerm("declared", 0.25, declared, LOGITS, needs=needs),
        ]
    )
    return loss, undeclared, declared, needs


def test_param_groups_undeclared_first_at_the_base_lr_then_each_terms_own() -> None:
    loss, undeclared, declared, _ = sum_with_needs()
    groups = loss.param_groups(base_lr=1e-3)
    assert [g["params"] for g in groups] == [[undeclared.scale], [declared.scale]]
    assert "lr" not in groups[0] and groups[1]["lr"] == pytest.approx(1e-2)
    assert WeightedLossSum([LossTerm("f", 1.0, SumOfSource(), FEATURES)]).param_groups(1.0) == []


def test_after_backward_tells_each_term_its_weight_in_the_total() -> None:
    loss, _, _, needs = sum_with_needs()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss.after_backward(scaler)
    loss.after_backward(scaler, loss_weight=2.0)  # this sum itself weighted 2 in a total
    assert needs.weights == [0.25, 0.5]


def test_optimizer_state_by_term_name_and_refused_for_other_terms() -> None:
    loss, _, _, needs = sum_with_needs()
    assert loss.optimizer_state_dict() == {"declared": {"steps": 0}}
    loss.load_optimizer_state_dict({"declared": {"steps": 7}})
    assert needs.state == {"steps": 7}
    with pytest.raises(ValueError, match="expected \\['declared'\\]"):
        loss.load_optimizer_state_dict({"center": {}})
