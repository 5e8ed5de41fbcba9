"""Pairwise distances for the triplet losses."""

from model.losses.distances.distance import Distance
from model.losses.distances.euclidean_distance import EuclideanDistance, euclidean_distances
from model.losses.distances.normalized_squared_euclidean_distance import (
    NormalizedSquaredEuclideanDistance,
    squared_distances_normalized,
)

__all__ = [
    "Distance",
    "EuclideanDistance",
    "NormalizedSquaredEuclideanDistance",
    "euclidean_distances",
    "squared_distances_normalized",
]
