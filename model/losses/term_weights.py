"""Per-term weight overrides of a recipe's loss, with weight 0 as "this term is switched off"."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from model.losses.weighted_loss_sum import WeightedLossSum


def with_term_weights(loss: WeightedLossSum, weights: Mapping[str, float]) -> WeightedLossSum:
    """``loss`` with ``weights[name]`` in place of each named term's weight; terms whose weight
    ends up 0 (overridden, or set so by the recipe, e.g. ``loss.center_weight=0``) are left out.

    A term left out is not in the sum at all: no forward, no logged value, no optimiser group,
    no optimiser of its own (the center loss's SGD would divide its gradient by the weight).
    An unknown name, a negative weight, or every term at 0 is a ``ValueError``.
    """
    names = [t.name for t in loss.terms]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(
            f"loss.weights: no term {', '.join(repr(u) for u in unknown)} in this recipe; "
            f"its terms: {', '.join(names)}"
        )
    terms = []
    for term in loss.terms:
        weight = float(weights.get(term.name, term.weight))
        if weight < 0.0:
            raise ValueError(f"loss weight of {term.name!r} must be >= 0, got {weight}")
        if weight > 0.0:
            terms.append(dataclasses.replace(term, weight=weight))
    if not terms:
        raise ValueError(f"every loss term has weight 0 ({', '.join(names)}): nothing to train")
    if len(terms) == len(loss.terms) and all(
        a.weight == b.weight for a, b in zip(terms, loss.terms, strict=True)
    ):
        return loss
    return WeightedLossSum(terms)
