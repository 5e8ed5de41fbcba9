"""Training recipe: the CTL paper's objective (centroids-reid ``train_ctl_model.py``) for the
BN-neck network."""

from __future__ import annotations

from model.losses.center_loss import DEFAULT_CENTER_LOSS_WEIGHT, CenterLoss
from model.losses.center_sgd import DEFAULT_CENTER_LR, CenterSGD
from model.losses.centroid_triplet_loss import DEFAULT_MARGIN, CentroidTripletLoss
from model.losses.cross_entropy_label_smooth import DEFAULT_EPSILON, CrossEntropyLabelSmooth
from model.losses.distances.euclidean_distance import EuclideanDistance
from model.losses.loss_term import LossTerm
from model.losses.miners.batch_hard_miner import BatchHardMiner
from model.losses.output_selectors import FEATURES, LOGITS
from model.losses.recipes.term_names import CENTER, CENTROID_TRIPLET, CROSS_ENTROPY, TRIPLET
from model.losses.triplet_margin_loss import TripletMarginLoss
from model.losses.weighted_loss_sum import WeightedLossSum


def ctl_recipe(
    num_classes: int,
    feat_dim: int,
    *,
    margin: float = DEFAULT_MARGIN,
    label_smoothing: float = DEFAULT_EPSILON,
    center_weight: float = DEFAULT_CENTER_LOSS_WEIGHT,
    center_lr: float = DEFAULT_CENTER_LR,
) -> WeightedLossSum:
    """Four terms:

    * ``"cross_entropy"`` ×1: label-smoothed CE on ``logits`` (N, num_classes);
    * ``"triplet"`` ×1: batch-hard triplet on plain Euclidean distances between the
      ``features`` (N, feat_dim), the anchor among its own positives (reid-strong-baseline);
    * ``"center"`` ×``center_weight``: center loss on ``features``; its centers have their own
      SGD at ``center_lr`` on the unweighted gradient (:class:`CenterSGD`);
    * ``"centroid_triplet"`` ×1: centroid triplet loss on ``features``.

    Weights 1 are the reference's ``SOLVER.CE_WEIGHT`` / ``TRIPLET_WEIGHT`` /
    ``CENTROID_CONTRASTIVE_WEIGHT`` defaults; the metric losses act on the raw pre-BN
    feature, the CE on the BN-neck classifier, as in the reference (BNNeck).
    """
    triplet = TripletMarginLoss(
        margin, EuclideanDistance(), BatchHardMiner(anchor_as_positive=True)
    )
    center = CenterLoss(num_classes, feat_dim)
    return WeightedLossSum(
        [
            LossTerm(
                CROSS_ENTROPY, 1.0, CrossEntropyLabelSmooth(num_classes, label_smoothing), LOGITS
            ),
            LossTerm(TRIPLET, 1.0, triplet, FEATURES),
            LossTerm(CENTER, center_weight, center, FEATURES, needs=CenterSGD(center, center_lr)),
            LossTerm(CENTROID_TRIPLET, 1.0, CentroidTripletLoss(margin), FEATURES),
        ]
    )
