"""Plain Euclidean distance in the reference's form: by hand, its 1e-12 floor, half precision."""

from __future__ import annotations

import pytest
import torch

from model.losses.distances.euclidean_distance import EuclideanDistance, euclidean_distances


def test_euclidean_distances_by_hand_and_floor() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    d = euclidean_distances(x, x)
    assert d.flatten().tolist() == pytest.approx([1e-6, 5.0, 5.0, 1e-6], abs=1e-12)


def test_half_precision_input_gives_finite_float32_distances() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float16)
    d = euclidean_distances(x, x)
    assert d.dtype == torch.float32
    assert d[0, 1].item() == pytest.approx(5.0) and d[0, 0].item() > 0.0


def test_the_distance_object_is_the_self_distance_matrix() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(EuclideanDistance()(x), euclidean_distances(x, x))
