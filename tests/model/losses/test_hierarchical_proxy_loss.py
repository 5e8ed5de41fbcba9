"""HPL: hierarchy refresh follows k-means on the moved proxies; the loss is the weighted sum of
the base form at both levels, checked against numpy oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.losses.hierarchical_proxy_loss import HierarchicalProxyLoss, default_num_coarse
from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_nca_loss import ProxyNCALoss

E = np.eye(3)
# Six classes in two tight groups; GROUPING_B regroups them so that k-means must change its map.
GROUPING_A = [0, 0, 0, 1, 1, 1]
GROUPING_B = [2, 0, 0, 2, 2, 0]


def proxies_for(grouping: list[int], jitter_seed: int) -> torch.Tensor:
    rng = np.random.default_rng(jitter_seed)
    base = np.stack([E[g] for g in grouping]) + 0.05 * rng.standard_normal((len(grouping), 3))
    scale = rng.uniform(0.5, 3.0, size=(len(grouping), 1))  # k-means must ignore proxy norms
    return torch.tensor(base * scale, dtype=torch.float64)


def partition(assignment: list[int]) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, c in enumerate(assignment):
        groups.setdefault(c, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def set_proxies(loss: HierarchicalProxyLoss, value: torch.Tensor) -> None:
    with torch.no_grad():
        loss.base.proxies.copy_(value)


def cluster_means(fine: np.ndarray, assignment: list[int], k: int) -> np.ndarray:
    unit = fine / np.linalg.norm(fine, axis=1, keepdims=True)
    return np.stack(
        [unit[[i for i, c in enumerate(assignment) if c == j]].mean(axis=0) for j in range(k)]
    )


def proxy_anchor_oracle(
    x: np.ndarray, y: list[int], p: np.ndarray, alpha: float = 32.0, delta: float = 0.1
) -> float:
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (
        p / np.linalg.norm(p, axis=1, keepdims=True)
    ).T
    pos, neg = [], []
    for k in range(len(p)):
        members = [i for i in range(len(y)) if y[i] == k]
        others = [i for i in range(len(y)) if y[i] != k]
        if members:
            pos.append(math.log1p(sum(math.exp(-alpha * (cos[i, k] - delta)) for i in members)))
        neg.append(math.log1p(sum(math.exp(alpha * (cos[i, k] + delta)) for i in others)))
    return sum(pos) / len(pos) + sum(neg) / len(neg)


def proxy_nca_oracle(x: np.ndarray, y: list[int], p: np.ndarray, scale: float = 1.0) -> float:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(y)):
        logits = [-scale * float(np.sum((xn[i] - q) ** 2)) for q in pn]
        total += -(logits[y[i]] - math.log(sum(math.exp(v) for v in logits)))
    return total / len(y)


def make_hpl(**kwargs: object) -> HierarchicalProxyLoss:
    base = ProxyAnchorLoss(6, 3).double()
    hpl = HierarchicalProxyLoss(base, **kwargs).double()  # type: ignore[arg-type]
    set_proxies(hpl, proxies_for(GROUPING_A, 0))
    hpl.refresh_hierarchy()
    return hpl


def test_refresh_follows_the_proxies() -> None:
    hpl = make_hpl(num_coarse=2)
    assert partition(hpl.class_to_cluster.tolist()) == partition(GROUPING_A)
    set_proxies(hpl, proxies_for(GROUPING_B, 1))
    assert partition(hpl.class_to_cluster.tolist()) == partition(GROUPING_A)  # not yet
    hpl.refresh_hierarchy()
    assert partition(hpl.class_to_cluster.tolist()) == partition(GROUPING_B)


def test_fixed_coarse_proxies_are_cluster_means_of_normalised_fine_proxies() -> None:
    hpl = make_hpl(num_coarse=2, learnable_coarse=False)
    assignment = hpl.class_to_cluster.tolist()
    want = cluster_means(hpl.base.proxies.detach().numpy(), assignment, 2)
    np.testing.assert_allclose(hpl.coarse_proxies().detach().numpy(), want, rtol=1e-12)
    # Recomputed live: moving one fine proxy moves its cluster's mean before any refresh.
    moved = proxies_for(GROUPING_A, 0)
    moved[0] = torch.tensor([0.0, 0.0, 4.0])
    set_proxies(hpl, moved)
    want = cluster_means(moved.numpy(), assignment, 2)
    np.testing.assert_allclose(hpl.coarse_proxies().detach().numpy(), want, rtol=1e-12)


def test_learnable_coarse_proxies_are_reset_to_kmeans_centroids_at_refresh() -> None:
    hpl = make_hpl(num_coarse=2, learnable_coarse=True)
    assert hpl.learned_coarse is not None
    with torch.no_grad():
        hpl.learned_coarse.add_(1.0)  # pretend training moved them
    set_proxies(hpl, proxies_for(GROUPING_B, 2))
    hpl.refresh_hierarchy()
    assignment = hpl.class_to_cluster.tolist()
    want = cluster_means(hpl.base.proxies.detach().numpy(), assignment, 2)
    np.testing.assert_allclose(hpl.learned_coarse.detach().numpy(), want, rtol=1e-9)
    groups = hpl.param_groups(base_lr=1e-4)
    assert [g["params"] for g in groups] == [[hpl.base.proxies], [hpl.learned_coarse]]
    assert all(g["lr"] == pytest.approx(1e-2) for g in groups)


@pytest.mark.parametrize("base_name", ["proxy_anchor", "proxy_nca"])
def test_loss_is_weighted_sum_of_base_form_at_both_levels(base_name: str) -> None:
    base = {"proxy_anchor": ProxyAnchorLoss, "proxy_nca": ProxyNCALoss}[base_name](6, 3).double()
    oracle = {"proxy_anchor": proxy_anchor_oracle, "proxy_nca": proxy_nca_oracle}[base_name]
    hpl = HierarchicalProxyLoss(base, num_coarse=3, level_weights=(1.0, 0.1)).double()
    set_proxies(hpl, proxies_for(GROUPING_B, 3))
    hpl.refresh_hierarchy()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    y = [0, 0, 1, 3, 3, 5, 4, 1]
    fine = base.proxies.detach().numpy()
    c = hpl.class_to_cluster.tolist()
    want = oracle(x.numpy(), y, fine) + 0.1 * oracle(
        x.numpy(), [c[v] for v in y], cluster_means(fine, c, 3)
    )
    assert hpl.eval()(x, torch.tensor(y)).item() == pytest.approx(want, rel=1e-10)


def test_refresh_every_counts_training_steps_only() -> None:
    hpl = make_hpl(num_coarse=2, refresh_every=3)
    set_proxies(hpl, proxies_for(GROUPING_B, 5))
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 3, 4])
    hpl.eval()
    for _ in range(5):
        hpl(x, y)
    assert int(hpl.step) == 0
    hpl.train()
    for _ in range(3):  # steps 0, 1, 2: the map built from GROUPING_A stays
        hpl(x, y)
        assert partition(hpl.class_to_cluster.tolist()) == partition(GROUPING_A)
    hpl(x, y)  # step 3 rebuilds first
    assert partition(hpl.class_to_cluster.tolist()) == partition(GROUPING_B)
    assert int(hpl.step) == 4


def test_coarse_level_trains_the_fine_proxies() -> None:
    hpl = make_hpl(num_coarse=2, level_weights=(0.0, 1.0))
    hpl.eval()(torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 3, 4])).backward()
    grad = hpl.base.proxies.grad
    assert grad is not None and grad.abs().sum() > 0


def test_default_num_coarse() -> None:
    assert [default_num_coarse(c) for c in (2, 3, 100, 11318)] == [2, 2, 10, 106]
    assert HierarchicalProxyLoss(ProxyNCALoss(100, 8)).num_coarse == 10
