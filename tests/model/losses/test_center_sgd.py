"""The centers' own SGD: a step on the unweighted gradient, by hand; AMP unscaling and the
skipped step on non-finite gradients; its state for checkpoints."""

from __future__ import annotations

import pytest
import torch

from model.losses.center_loss import CenterLoss
from model.losses.center_sgd import CenterSGD, make_center_optimizer, step_centers

from .test_center_loss import CENTERS, LABELS, X, center_loss_with

# dL/dc_k = -(2/N) Σ_{y_i = k} (x_i - c_k):
#   c0: -(2/3)·(1, 0);  c1: -(2/3)·[(0, 2) + (-1, -1)] = -(2/3)·(-1, 1).
# One SGD step at lr 0.5 on that (unweighted) gradient:
CENTERS_AFTER = [[1.0 / 3.0, 0.0], [2.0 / 3.0, 4.0 / 3.0]]
FLAT_AFTER = [v for row in CENTERS_AFTER for v in row]


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


def weighted_backward(
    center_loss: CenterLoss, weight: float, scaler: torch.amp.GradScaler | None = None
) -> None:
    """Backward of ``weight · center_loss(X)``, scaled by ``scaler`` as a trainer step does."""
    total = weight * center_loss(torch.tensor(X), torch.tensor(LABELS))
    (total if scaler is None else scaler.scale(total)).backward()


def test_sgd_needs_no_network_group_and_steps_on_the_unweighted_gradient() -> None:
    center_loss = center_loss_with(CENTERS)
    needs = CenterSGD(center_loss)  # the reference's lr 0.5
    assert needs.param_groups(base_lr=3.5e-4) == []
    (group,) = needs.optimizer.param_groups
    assert group["params"] == [center_loss.centers] and group["lr"] == 0.5
    weighted_backward(center_loss, 5e-4)
    needs.after_backward(torch.amp.GradScaler("cpu", enabled=False), loss_weight=5e-4)
    assert center_loss.centers.detach().flatten().tolist() == pytest.approx(FLAT_AFTER, abs=1e-5)


def test_amp_gradients_are_unscaled_before_the_step() -> None:
    center_loss = center_loss_with(CENTERS)
    needs = CenterSGD(center_loss)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    weighted_backward(center_loss, 0.01, scaler)
    assert center_loss.centers.grad is not None
    assert center_loss.centers.grad.abs().max().item() > 1.0  # 1024 × 0.01 × (at most 2/3)
    needs.after_backward(scaler, loss_weight=0.01)
    assert center_loss.centers.detach().flatten().tolist() == pytest.approx(FLAT_AFTER, abs=1e-5)


def test_non_finite_gradients_skip_the_step() -> None:
    center_loss = center_loss_with(CENTERS)
    needs = CenterSGD(center_loss)
    weighted_backward(center_loss, 1.0)
    assert center_loss.centers.grad is not None
    center_loss.centers.grad[1, 0] = float("inf")
    needs.after_backward(torch.amp.GradScaler("cpu", enabled=False), loss_weight=1.0)
    assert center_loss.centers.detach().tolist() == CENTERS


def test_optimizer_state_round_trips() -> None:
    center_loss = center_loss_with(CENTERS)
    needs = CenterSGD(center_loss, lr=0.25)
    state = needs.optimizer_state_dict()
    other = CenterSGD(center_loss_with(CENTERS), lr=0.9)
    other.load_optimizer_state_dict(state)
    assert other.optimizer.param_groups[0]["lr"] == 0.25
