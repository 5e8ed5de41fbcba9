"""Retrieval evaluation metrics (numpy only): instance-level and centroid-level."""

from model.evaluation.centroid_evaluation import CentroidResult, centroid_metrics
from model.evaluation.ranking_metrics import RankingResult, accuracy_at_k, instance_metrics

__all__ = [
    "CentroidResult",
    "RankingResult",
    "accuracy_at_k",
    "centroid_metrics",
    "instance_metrics",
]
