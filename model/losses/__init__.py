from model.losses.batch_hard_triplet_loss import (
    BatchHardTripletLoss,
    batch_hard_triplet,
    euclidean_distances,
    masked_batch_hard_triplet,
)
from model.losses.center_loss import CenterLoss, make_center_optimizer, step_centers
from model.losses.centroid_triplet_loss import CentroidTripletLoss
from model.losses.cross_entropy_label_smooth import CrossEntropyLabelSmooth
from model.losses.hierarchical_proxy_loss import HierarchicalProxyLoss
from model.losses.hpl_recipe import hpl_recipe, proxy_param_groups
from model.losses.net_output_like import NetOutputLike
from model.losses.output_selectors import EMBEDDINGS, FEATURES, LOGITS, OutputSelector
from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_kmeans import kmeans
from model.losses.proxy_nca_loss import ProxyNCALoss
from model.losses.ranking_regularizer_recipe import ranking_regularizer_recipe
from model.losses.semi_hard_triplet_loss import (
    TripletLossWithMining,
    mine_batch_hard,
    mine_semi_hard,
)
from model.losses.weighted_loss_sum import LossTerm, WeightedLossSum, ctl_recipe

__all__ = [
    "EMBEDDINGS",
    "FEATURES",
    "LOGITS",
    "BatchHardTripletLoss",
    "CenterLoss",
    "CentroidTripletLoss",
    "CrossEntropyLabelSmooth",
    "HierarchicalProxyLoss",
    "LossTerm",
    "NetOutputLike",
    "OutputSelector",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "TripletLossWithMining",
    "WeightedLossSum",
    "batch_hard_triplet",
    "ctl_recipe",
    "euclidean_distances",
    "hpl_recipe",
    "kmeans",
    "make_center_optimizer",
    "masked_batch_hard_triplet",
    "mine_batch_hard",
    "mine_semi_hard",
    "proxy_param_groups",
    "ranking_regularizer_recipe",
    "step_centers",
]
