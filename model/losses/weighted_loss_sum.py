"""A training objective as a weighted sum of named loss terms, and the CTL paper's recipe.

``total = Σ_t weight_t · loss_t(source_t(output), labels)``; the per-term *unweighted* values are
returned alongside for logging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from model.losses.center_loss import DEFAULT_CENTER_LOSS_WEIGHT, CenterLoss
from model.losses.centroid_triplet_loss import DEFAULT_MARGIN, CentroidTripletLoss
from model.losses.cross_entropy_label_smooth import DEFAULT_EPSILON, CrossEntropyLabelSmooth
from model.losses.distances.euclidean_distance import EuclideanDistance
from model.losses.miners.batch_hard_miner import BatchHardMiner
from model.losses.net_output_like import NetOutputLike
from model.losses.output_selectors import FEATURES, LOGITS
from model.losses.triplet_margin_loss import TripletMarginLoss

# Term names of :func:`ctl_recipe` (also the keys of its per-term values).
CROSS_ENTROPY = "cross_entropy"
TRIPLET = "triplet"
CENTER = "center"
CENTROID_TRIPLET = "centroid_triplet"


@dataclass(frozen=True)
class LossTerm:
    """One term: ``weight · loss(source(output), labels)``. ``name`` must be unique in its sum
    and a valid module name (no ``.``); it keys the term's logged value and its state_dict."""

    name: str
    weight: float
    loss: nn.Module
    source: Callable[[NetOutputLike], Tensor]


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


def ctl_recipe(
    num_classes: int,
    feat_dim: int,
    *,
    margin: float = DEFAULT_MARGIN,
    label_smoothing: float = DEFAULT_EPSILON,
    center_weight: float = DEFAULT_CENTER_LOSS_WEIGHT,
) -> WeightedLossSum:
    """The CTL paper's objective (centroids-reid ``train_ctl_model.py``), four terms:

    * ``"cross_entropy"`` ×1: label-smoothed CE on ``logits`` (N, num_classes);
    * ``"triplet"`` ×1: batch-hard triplet on plain Euclidean distances between the
      ``features`` (N, feat_dim), the anchor among its own positives (reid-strong-baseline);
    * ``"center"`` ×``center_weight``: center loss on ``features`` (its centers need their own
      optimiser, see :func:`~model.losses.center_loss.step_centers`);
    * ``"centroid_triplet"`` ×1: centroid triplet loss on ``features``.

    Weights 1 are the reference's ``SOLVER.CE_WEIGHT`` / ``TRIPLET_WEIGHT`` /
    ``CENTROID_CONTRASTIVE_WEIGHT`` defaults; the metric losses act on the raw pre-BN
    feature, the CE on the BN-neck classifier, as in the reference (BNNeck).
    """
    triplet = TripletMarginLoss(
        margin, EuclideanDistance(), BatchHardMiner(anchor_as_positive=True)
    )
    return WeightedLossSum(
        [
            LossTerm(
                CROSS_ENTROPY, 1.0, CrossEntropyLabelSmooth(num_classes, label_smoothing), LOGITS
            ),
            LossTerm(TRIPLET, 1.0, triplet, FEATURES),
            LossTerm(CENTER, center_weight, CenterLoss(num_classes, feat_dim), FEATURES),
            LossTerm(CENTROID_TRIPLET, 1.0, CentroidTripletLoss(margin), FEATURES),
        ]
    )
