"""Proxy-Anchor loss against a per-proxy loop oracle and a hand-derived literal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_loss import PROXY_LR_MULTIPLIER


def oracle(
    emb: np.ndarray, labels: list[int], proxies: np.ndarray, alpha: float, delta: float
) -> float:
    """Kim et al. eq. (4), written directly: loops over proxies and samples."""

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    present = sorted(set(labels))
    pos_total = 0.0
    for p in present:
        s = sum(
            math.exp(-alpha * (cos(x, proxies[p]) - delta))
            for x, y in zip(emb, labels, strict=True)
            if y == p
        )
        pos_total += math.log(1.0 + s)
    neg_total = 0.0
    for p in range(len(proxies)):
        s = sum(
            math.exp(alpha * (cos(x, proxies[p]) + delta))
            for x, y in zip(emb, labels, strict=True)
            if y != p
        )
        neg_total += math.log(1.0 + s)
    return pos_total / len(present) + neg_total / len(proxies)


def test_hand_derived_orthogonal_case() -> None:
    loss = ProxyAnchorLoss(2, 2).double()
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))  # norms must not matter
    emb = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # cos = identity: each proxy has its one positive at cos 1 and one negative at cos 0.
    expected = math.log1p(math.exp(-32 * 0.9)) + math.log1p(math.exp(32 * 0.1))
    assert loss(emb, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_loop_oracle_with_absent_classes(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    num_classes, dim = 7, 5
    loss = ProxyAnchorLoss(num_classes, dim, alpha=32.0, delta=0.1).double()
    emb = torch.randn(10, dim, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 0, 2, 2, 2, 3, 5, 5, 0, 3])  # classes 1, 4, 6 have no samples
    got = loss(emb, labels).item()
    want = oracle(emb.numpy(), labels.tolist(), loss.proxies.detach().numpy(), 32.0, 0.1)
    assert got == pytest.approx(want, rel=1e-10)


def test_no_overflow_at_alpha_32_and_gradients_reach_proxies() -> None:
    loss = ProxyAnchorLoss(3, 4)
    emb = loss.proxies.detach()[[0, 1, 2, 0]].clone().requires_grad_(True)
    emb_far = -emb.detach()  # every sample at cos -1 from its own proxy: exp(32 * 1.1) terms
    value = loss(torch.cat([emb, emb_far]), torch.tensor([1, 0, 2, 1, 0, 1, 2, 0]))
    assert torch.isfinite(value)
    value.backward()
    assert loss.proxies.grad is not None and loss.proxies.grad.abs().sum() > 0


def test_proxies_get_their_own_learning_rate() -> None:
    loss = ProxyAnchorLoss(4, 8)
    (group,) = loss.param_groups(base_lr=1e-4)
    assert group["params"] == [loss.proxies]
    assert group["lr"] == pytest.approx(1e-4 * PROXY_LR_MULTIPLIER)
    assert PROXY_LR_MULTIPLIER == 100.0
