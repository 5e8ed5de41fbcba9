from model.losses.center_loss import CenterLoss
from model.losses.center_sgd import CenterSGD, make_center_optimizer, step_centers
from model.losses.centroid_triplet_loss import CentroidTripletLoss
from model.losses.cross_entropy_label_smooth import CrossEntropyLabelSmooth
from model.losses.distances import EuclideanDistance, NormalizedSquaredEuclideanDistance
from model.losses.hierarchical_proxy_loss import HierarchicalProxyLoss
from model.losses.loss_term import LossTerm
from model.losses.miners import BatchHardMiner, SemiHardMiner
from model.losses.net_output_like import NetOutputLike
from model.losses.optimizer_needs import NetworkOptimizerOnly, OptimizerNeeds
from model.losses.output_selectors import EMBEDDINGS, FEATURES, LOGITS, OutputSelector
from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_kmeans import kmeans
from model.losses.proxy_loss import ProxyLoss
from model.losses.proxy_nca_loss import ProxyNCALoss
from model.losses.recipes import (
    ctl_recipe,
    hpl_recipe,
    ranking_regularizer_recipe,
)
from model.losses.triplet_margin_loss import TripletMarginLoss, triplet_margin_loss
from model.losses.weighted_loss_sum import WeightedLossSum

__all__ = [
    "EMBEDDINGS",
    "FEATURES",
    "LOGITS",
    "BatchHardMiner",
    "CenterLoss",
    "CenterSGD",
    "CentroidTripletLoss",
    "CrossEntropyLabelSmooth",
    "EuclideanDistance",
    "HierarchicalProxyLoss",
    "LossTerm",
    "NetOutputLike",
    "NetworkOptimizerOnly",
    "NormalizedSquaredEuclideanDistance",
    "OptimizerNeeds",
    "OutputSelector",
    "ProxyAnchorLoss",
    "ProxyLoss",
    "ProxyNCALoss",
    "SemiHardMiner",
    "TripletMarginLoss",
    "WeightedLossSum",
    "ctl_recipe",
    "hpl_recipe",
    "kmeans",
    "make_center_optimizer",
    "ranking_regularizer_recipe",
    "step_centers",
    "triplet_margin_loss",
]
