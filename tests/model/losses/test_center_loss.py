"""Center loss value by hand (the centers' own step: test_center_sgd.py)."""

from __future__ import annotations

import pytest
import torch

from model.losses.center_loss import CenterLoss

CENTERS = [[0.0, 0.0], [1.0, 1.0]]
X = [[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]]
LABELS = [0, 1, 1]
# Squared distances to own center: 1, (0² + 2²) = 4, (1² + 1²) = 2 -> (1 + 4 + 2) / 3.
LOSS = 7.0 / 3.0


def center_loss_with(centers: list[list[float]]) -> CenterLoss:
    loss = CenterLoss(num_classes=len(centers), feat_dim=len(centers[0]))
    with torch.no_grad():
        loss.centers.copy_(torch.tensor(centers))
    return loss


def test_value_by_hand() -> None:
    loss = center_loss_with(CENTERS)(torch.tensor(X), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(LOSS, rel=1e-6)


def test_exact_hit_is_clamped_to_the_floor() -> None:
    loss = center_loss_with(CENTERS)(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([1, 0]))
    assert loss.item() == pytest.approx(1e-12, rel=1e-6)  # (1e-12 + 1e-12) / 2


def test_centers_are_a_learnable_randn_parameter() -> None:
    torch.manual_seed(0)
    loss = CenterLoss(num_classes=300, feat_dim=64)
    centers = loss.centers
    assert isinstance(centers, torch.nn.Parameter) and centers.requires_grad
    assert centers.shape == (300, 64)
    assert abs(centers.mean().item()) < 0.02 and centers.std().item() == pytest.approx(1, abs=0.02)
