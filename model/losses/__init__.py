from model.losses.batch_hard_triplet_loss import (
    BatchHardTripletLoss,
    batch_hard_triplet,
    euclidean_distances,
    masked_batch_hard_triplet,
)
from model.losses.center_loss import CenterLoss, make_center_optimizer, step_centers
from model.losses.centroid_triplet_loss import CentroidTripletLoss
from model.losses.cross_entropy_label_smooth import CrossEntropyLabelSmooth
from model.losses.net_output_like import NetOutputLike
from model.losses.output_selectors import EMBEDDINGS, FEATURES, LOGITS, OutputSelector
from model.losses.weighted_loss_sum import LossTerm, WeightedLossSum, ctl_recipe

__all__ = [
    "EMBEDDINGS",
    "FEATURES",
    "LOGITS",
    "BatchHardTripletLoss",
    "CenterLoss",
    "CentroidTripletLoss",
    "CrossEntropyLabelSmooth",
    "LossTerm",
    "NetOutputLike",
    "OutputSelector",
    "WeightedLossSum",
    "batch_hard_triplet",
    "ctl_recipe",
    "euclidean_distances",
    "make_center_optimizer",
    "masked_batch_hard_triplet",
    "step_centers",
]
