"""Center loss value by hand, and the centers' own step on the unweighted gradient."""

from __future__ import annotations

import pytest
import torch

from model.losses.center_loss import CenterLoss, make_center_optimizer, step_centers

CENTERS = [[0.0, 0.0], [1.0, 1.0]]
X = [[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]]
LABELS = [0, 1, 1]
# Squared distances to own center: 1, (0² + 2²) = 4, (1² + 1²) = 2 -> (1 + 4 + 2) / 3.
LOSS = 7.0 / 3.0
# dL/dc_k = -(2/N) Σ_{y_i = k} (x_i - c_k):
#   c0: -(2/3)·(1, 0);  c1: -(2/3)·[(0, 2) + (-1, -1)] = -(2/3)·(-1, 1).
# One SGD step at lr 0.5 on that (unweighted) gradient:
CENTERS_AFTER = [[1.0 / 3.0, 0.0], [2.0 / 3.0, 4.0 / 3.0]]


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


@pytest.mark.parametrize("weight", [5e-4, 1.0, 3.0])
def test_step_follows_the_unweighted_gradient(weight: float) -> None:
    center_loss = center_loss_with(CENTERS)
    optimizer = make_center_optimizer(center_loss)  # the reference's lr 0.5
    x = torch.tensor(X, requires_grad=True)
    other_term = (x**2).sum()  # a network loss: must not reach the centers
    total = other_term + weight * center_loss(x, torch.tensor(LABELS))
    total.backward()
    # The network still sees the *weighted* gradient: 2x + weight·(2/N)(x - c_y).
    c_y = torch.tensor(CENTERS)[LABELS]
    expected_x_grad = 2 * torch.tensor(X) + weight * (2.0 / 3.0) * (torch.tensor(X) - c_y)
    assert x.grad is not None and torch.allclose(x.grad, expected_x_grad, atol=1e-6)

    step_centers(center_loss, optimizer, weight)
    after = center_loss.centers.detach().flatten().tolist()
    assert after == pytest.approx([v for row in CENTERS_AFTER for v in row], abs=1e-5)


def test_step_without_rescaling_would_be_weight_times_smaller() -> None:
    # Guards the test above: a plain SGD step moves the centers by weight × the expected amount.
    center_loss = center_loss_with(CENTERS)
    optimizer = make_center_optimizer(center_loss)
    (5e-4 * center_loss(torch.tensor(X), torch.tensor(LABELS))).backward()
    optimizer.step()
    moved = (center_loss.centers.detach() - torch.tensor(CENTERS)).abs().max().item()
    assert moved == pytest.approx(5e-4 * (2.0 / 3.0) * 0.5, rel=1e-4)


def test_non_positive_weight_is_refused() -> None:
    center_loss = center_loss_with(CENTERS)
    with pytest.raises(ValueError, match="positive"):
        step_centers(center_loss, make_center_optimizer(center_loss), 0.0)
