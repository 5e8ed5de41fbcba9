"""Training recipe: the ranking regularizer (Taha et al., WACV 2020) for :class:`TwoHeadNet`.

``L = CE(logits, y) + λ · triplet(features, y)`` with the triplet loss on squared Euclidean
distances between L2-normalised embedding-head outputs (margin 0.2, as the authors' code).
"""

from __future__ import annotations

from torch import nn

from model.losses.output_selectors import FEATURES, LOGITS
from model.losses.semi_hard_triplet_loss import DEFAULT_MARGIN, TripletLossWithMining
from model.losses.weighted_loss_sum import CROSS_ENTROPY, TRIPLET, LossTerm, WeightedLossSum

# The paper's λ = 1: classification and ranking losses weighted equally.
DEFAULT_LAMBDA = 1.0
# The authors' own results show batch-hard beating their semi-hard on all five datasets.
DEFAULT_MINING = "batch_hard"


def ranking_regularizer_recipe(
    num_classes: int,
    *,
    lam: float = DEFAULT_LAMBDA,
    margin: float = DEFAULT_MARGIN,
    mining: str = DEFAULT_MINING,
) -> WeightedLossSum:
    """Terms ``"cross_entropy"`` (weight 1, on ``logits`` (N, num_classes)) and ``"triplet"``
    (weight ``lam``, on ``features`` (N, D)). ``mining``: ``"batch_hard"`` or ``"semi_hard"``.

    ``num_classes`` keeps the signature uniform with the other recipes; the softmax head needs
    at least two classes to learn anything, so fewer is refused here rather than mid-training.
    """
    if num_classes < 2:
        raise ValueError(f"the classification head needs at least 2 classes, got {num_classes}")
    return WeightedLossSum(
        [
            # Plain softmax CE: the paper regularises a standard classifier, no label smoothing.
            LossTerm(CROSS_ENTROPY, 1.0, nn.CrossEntropyLoss(), LOGITS),
            # TwoHeadNet's raw embedding-head output; the triplet loss normalises it itself.
            LossTerm(TRIPLET, lam, TripletLossWithMining(margin, mining), FEATURES),
        ]
    )
