"""A training objective as a weighted sum of named loss terms.

``total = Σ_t weight_t · loss_t(source_t(output), labels)``; the per-term *unweighted* values are
returned alongside for logging.
"""

from __future__ import annotations

from collections.abc import Sequence

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

    def extra_repr(self) -> str:
        return ", ".join(f"{t.name}×{t.weight:g}" for t in self.terms)
