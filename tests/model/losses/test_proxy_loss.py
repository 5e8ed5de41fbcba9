"""The proxy losses' shared base: one proxy per class, their own optimiser group at the
constructor's lr multiplier."""

from __future__ import annotations

import pytest
import torch

from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_loss import PROXY_LR_MULTIPLIER, ProxyLoss
from model.losses.proxy_nca_loss import ProxyNCALoss

PROXY_LOSSES = [ProxyAnchorLoss, ProxyNCALoss]


@pytest.mark.parametrize("cls", PROXY_LOSSES)
def test_group_at_the_constructor_lr_multiplier(cls: type[ProxyLoss]) -> None:
    default, tenfold = cls(5, 3), cls(5, 3, lr_multiplier=10.0)
    assert default.lr_multiplier == PROXY_LR_MULTIPLIER
    ((d,), (t,)) = default.param_groups(base_lr=1e-3), tenfold.param_groups(base_lr=1e-3)
    assert d["params"] == [default.proxies] and t["params"] == [tenfold.proxies]
    assert (d["lr"], t["lr"]) == (pytest.approx(1e-1), pytest.approx(1e-2))


@pytest.mark.parametrize("cls", PROXY_LOSSES)
def test_forward_is_the_loss_against_its_own_proxies(cls: type[ProxyLoss]) -> None:
    loss = cls(4, 3).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 2, 3, 3])
    assert loss(x, y).item() == loss.loss_with_proxies(x, y, loss.proxies).item()


@pytest.mark.parametrize("cls", PROXY_LOSSES)
def test_sizes_must_be_positive(cls: type[ProxyLoss]) -> None:
    with pytest.raises(ValueError, match="positive"):
        cls(0, 3)
    with pytest.raises(ValueError, match="positive"):
        cls(3, 0)
