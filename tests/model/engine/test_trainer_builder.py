"""The network's optimiser as the builder assembles it: the network at the base lr, then the
groups the loss asks for; loss state the loss steps itself is in none of them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.config.train_config import SolverConfig
from model.engine.trainer_builder import build_optimizer
from model.losses.recipes.ctl_recipe import ctl_recipe
from model.losses.recipes.hpl_recipe import hpl_recipe


def tiny_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    net[1].bias.requires_grad_(False)  # like the BN-neck's frozen bias
    return net


def group_ids(optimizer: torch.optim.Optimizer) -> list[list[int]]:
    return [[id(p) for p in g["params"]] for g in optimizer.param_groups]


def test_ctl_centers_are_left_to_their_own_sgd() -> None:
    net, loss = tiny_net(), ctl_recipe(num_classes=5, feat_dim=3)
    optimizer = build_optimizer(net, loss, SolverConfig(base_lr=1e-3))
    trainable = [id(p) for p in net.parameters() if p.requires_grad]
    assert group_ids(optimizer) == [trainable]
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert optimizer.param_groups[0]["weight_decay"] == 5e-4


def test_hpl_proxies_get_a_group_at_their_multiplier() -> None:
    net = tiny_net()
    loss = hpl_recipe(6, 3, learnable_coarse=True, proxy_lr_multiplier=10.0)
    optimizer = build_optimizer(net, loss, SolverConfig(base_lr=1e-3))
    (hpl_term,) = loss.terms
    hpl = hpl_term.loss
    trainable = [id(p) for p in net.parameters() if p.requires_grad]
    assert group_ids(optimizer) == [
        trainable,
        [id(hpl.base.proxies)],
        [id(hpl.learned_coarse)],
    ]
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 1e-2, 1e-2])
