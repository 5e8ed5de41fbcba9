"""Proxy-NCA (pytorch-metric-learning's form) against a loop oracle and literals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.losses.proxy_nca_loss import ProxyNCALoss


def oracle(emb: np.ndarray, labels: list[int], proxies: np.ndarray, scale: float) -> float:
    """Mean over samples of -log softmax_{target}(-scale · ||x̂ - p̂||²), target in denominator."""
    total = 0.0
    for x, y in zip(emb, labels, strict=True):
        xn = x / np.linalg.norm(x)
        d = [float(np.sum((xn - p / np.linalg.norm(p)) ** 2)) for p in proxies]
        denom = sum(math.exp(-scale * dk) for dk in d)
        total += -math.log(math.exp(-scale * d[y]) / denom)
    return total / len(labels)


@pytest.mark.parametrize(("seed", "scale"), [(0, 1.0), (1, 9.0), (2, 3.0)])
def test_matches_loop_oracle(seed: int, scale: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    loss = ProxyNCALoss(6, 4, softmax_scale=scale).double()
    emb = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 3, 5, 5, 5, 2, 0])
    want = oracle(emb.numpy(), labels.tolist(), loss.proxies.detach().numpy(), scale)
    assert loss(emb, labels).item() == pytest.approx(want, rel=1e-10)


def test_hand_derived_literal() -> None:
    loss = ProxyNCALoss(2, 2).double()
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor([[5.0, 0.0], [0.0, 2.0]]))
    emb = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    # d(target) = 0, d(other) = ||(1,0) - (0,1)||² = 2: -log(1 / (1 + e^-2)).
    assert loss(emb, torch.tensor([0])).item() == pytest.approx(math.log1p(math.exp(-2.0)))
    # Seen from the wrong class: -log(e^-2 / (1 + e^-2)) = 2 + log(1 + e^-2).
    assert loss(emb, torch.tensor([1])).item() == pytest.approx(2.0 + math.log1p(math.exp(-2.0)))


def test_target_in_denominator_keeps_loss_nonnegative_and_log_c_when_uninformative() -> None:
    loss = ProxyNCALoss(5, 3)
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor([[1.0, 0.0, 0.0]]).repeat(5, 1))
    emb = torch.randn(4, 3)
    # All proxies coincide: every logit equal, the softmax uniform over the 5 proxies.
    assert loss(emb, torch.tensor([0, 1, 2, 4])).item() == pytest.approx(math.log(5), rel=1e-6)


def test_proxy_param_group_and_gradient() -> None:
    loss = ProxyNCALoss(3, 4)
    (group,) = loss.param_groups(base_lr=0.01)
    assert group["params"] == loss.proxy_parameters() == [loss.proxies]
    assert group["lr"] == pytest.approx(1.0)
    loss(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])).backward()
    assert loss.proxies.grad is not None and loss.proxies.grad.abs().sum() > 0
