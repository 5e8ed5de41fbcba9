"""Training recipe: the ranking regularizer (Taha et al., WACV 2020) for :class:`TwoHeadNet`.

``L = CE(logits, y) + λ · triplet(features, y)`` with the triplet loss on squared Euclidean
distances between L2-normalised embedding-head outputs (margin 0.2, as the authors' code).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from model.losses.distances.normalized_squared_euclidean_distance import (
    NormalizedSquaredEuclideanDistance,
)
from model.losses.loss_term import LossTerm
from model.losses.miners.batch_hard_miner import BatchHardMiner
from model.losses.miners.miner import Miner
from model.losses.miners.semi_hard_miner import SemiHardMiner
from model.losses.output_selectors import FEATURES, LOGITS
from model.losses.recipes.term_names import CROSS_ENTROPY, TRIPLET
from model.losses.triplet_margin_loss import TripletMarginLoss
from model.losses.weighted_loss_sum import WeightedLossSum

# The authors' code and the FaceNet paper both use 0.2 with unit-norm embeddings.
DEFAULT_MARGIN = 0.2
# The paper's λ = 1: classification and ranking losses weighted equally.
DEFAULT_LAMBDA = 1.0
# The authors' own results show batch-hard beating their semi-hard on all five datasets.
DEFAULT_MINING = "batch_hard"

# ``mining`` option -> miner. Batch-hard in Taha et al.'s form: the anchor is not its own
# positive, so an anchor alone in its class yields no triplet.
MINERS: dict[str, Callable[[], Miner]] = {
    "batch_hard": BatchHardMiner,
    "semi_hard": SemiHardMiner,
}


def ranking_regularizer_recipe(
    num_classes: int,
    *,
    lam: float = DEFAULT_LAMBDA,
    margin: float = DEFAULT_MARGIN,
    mining: str = DEFAULT_MINING,
) -> WeightedLossSum:
    """Terms ``"cross_entropy"`` (weight 1, on ``logits`` (N, num_classes)) and ``"triplet"``
    (weight ``lam``, on ``features`` (N, D)). ``mining``: a key of :data:`MINERS`.

    ``num_classes`` keeps the signature uniform with the other recipes; the softmax head needs
    at least two classes to learn anything, so fewer is refused here rather than mid-training.
    """
    if num_classes < 2:
        raise ValueError(f"the classification head needs at least 2 classes, got {num_classes}")
    if mining not in MINERS:
        raise ValueError(f"unknown mining {mining!r}; choose from {sorted(MINERS)}")
    # TwoHeadNet's raw embedding-head output; the distance normalises it.
    triplet = TripletMarginLoss(margin, NormalizedSquaredEuclideanDistance(), MINERS[mining]())
    return WeightedLossSum(
        [
            # Plain softmax CE: the paper regularises a standard classifier, no label smoothing.
            LossTerm(CROSS_ENTROPY, 1.0, nn.CrossEntropyLoss(), LOGITS),
            LossTerm(TRIPLET, lam, triplet, FEATURES),
        ]
    )
