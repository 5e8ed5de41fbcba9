"""A training objective as a weighted sum of named loss terms.

``total = Σ_t weight_t · loss_t(source_t(output), labels)``; the per-term *unweighted* values are
returned alongside for logging. The sum is also the :class:`~model.losses.optimizer_needs.
OptimizerNeeds` of all its terms together, which is all the trainer sees of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from model.losses.loss_term import LossTerm
from model.losses.net_output_like import NetOutputLike


class WeightedLossSum(nn.Module):
    """``forward(output, labels (N,) int64) -> (total scalar, {name: unweighted float})``.

    The term losses are registered as submodules (under ``losses.<name>``), so learnable loss
    state such as center-loss centers moves with ``.to()`` and is saved in ``state_dict()``.
    """

    def __init__(self, terms: Sequence[LossTerm]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a loss needs at least one term")
        names = [t.name for t in terms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate loss term names: {duplicates}")
        self.terms = tuple(terms)
        self.losses = nn.ModuleDict({t.name: t.loss for t in terms})

    def forward(self, output: NetOutputLike, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        values: dict[str, float] = {}
        total: Tensor | None = None
        for term in self.terms:
            value = term.loss(term.source(output), labels)
            values[term.name] = float(value.detach())
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        assert total is not None  # the constructor refuses an empty sum
        return total, values

    # --- OptimizerNeeds of all the terms -------------------------------------------------

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The terms' groups, in term order; first, when there are any, one group without its
        own lr for the trainable parameters of terms that declare no needs."""
        groups: list[dict[str, Any]] = []
        undeclared: list[nn.Parameter] = []
        for term in self.terms:
            if term.needs is None:
                undeclared.extend(p for p in term.loss.parameters() if p.requires_grad)
            else:
                groups.extend(term.needs.param_groups(base_lr))
        return ([{"params": undeclared}] if undeclared else []) + groups

    def after_backward(self, scaler: torch.amp.GradScaler, loss_weight: float = 1.0) -> None:
        """Each term's own step, told its weight in the total (``loss_weight`` × its own)."""
        for term in self.terms:
            if term.needs is not None:
                term.needs.after_backward(scaler, loss_weight * term.weight)

    def optimizer_state_dict(self) -> dict[str, Any]:
        """``{term name: its optimizer_state_dict()}`` for every term that declares needs."""
        return {t.name: t.needs.optimizer_state_dict() for t in self.terms if t.needs is not None}

    def load_optimizer_state_dict(self, state: Mapping[str, Any]) -> None:
        declared = {t.name: t.needs for t in self.terms if t.needs is not None}
        if set(state) != set(declared):
            raise ValueError(
                f"optimiser state for terms {sorted(state)}, expected {sorted(declared)}"
            )
        for name, needs in declared.items():
            needs.load_optimizer_state_dict(state[name])

    def extra_repr(self) -> str:
        return ", ".join(f"{t.name}×{t.weight:g}" for t in self.terms)
