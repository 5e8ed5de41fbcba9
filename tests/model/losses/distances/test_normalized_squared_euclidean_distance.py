"""Squared Euclidean distance between L2-normalised embeddings, on points of the unit circle."""

from __future__ import annotations

import pytest
import torch

from model.losses.distances.normalized_squared_euclidean_distance import (
    NormalizedSquaredEuclideanDistance,
    squared_distances_normalized,
)

from ..circle_points import chord2, on_circle


def test_distance_is_squared_euclidean_of_normalised_embeddings() -> None:
    emb = on_circle([0.0, 0.5, 2.0]) * torch.tensor([[1.0], [3.0], [0.2]], dtype=torch.float64)
    d = squared_distances_normalized(emb)
    assert d[0, 1].item() == pytest.approx(chord2(0.5))
    assert d[1, 2].item() == pytest.approx(chord2(1.5))
    assert torch.all(d.diagonal() == 0)


def test_the_distance_object_is_the_function() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(NormalizedSquaredEuclideanDistance()(x), squared_distances_normalized(x))
