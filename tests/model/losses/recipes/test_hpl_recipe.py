"""HPL recipe wiring: the loss reads NetOutput.embeddings, the base is chosen by name, and the
proxies (fine, and coarse when learnable) get one optimiser group each at 100× the base lr."""

from __future__ import annotations

import pytest
import torch

from model.losses.hierarchical_proxy_loss import HierarchicalProxyLoss
from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.proxy_nca_loss import ProxyNCALoss
from model.losses.recipes.hpl_recipe import hpl_recipe
from model.modeling.net_output import NetOutput


def the_hpl(recipe: torch.nn.Module) -> HierarchicalProxyLoss:
    (hpl,) = [m for m in recipe.modules() if isinstance(m, HierarchicalProxyLoss)]
    return hpl


@pytest.mark.parametrize(
    ("base", "cls"), [("proxy_anchor", ProxyAnchorLoss), ("proxy_nca", ProxyNCALoss)]
)
def test_recipe_is_hpl_on_the_retrieval_embedding(base: str, cls: type) -> None:
    torch.manual_seed(0)
    recipe = hpl_recipe(12, 6, base=base, num_coarse=3).eval()
    hpl = the_hpl(recipe)
    assert isinstance(hpl.base, cls) and hpl.num_coarse == 3
    emb, feats = torch.randn(8, 6), torch.randn(8, 6)
    labels = torch.tensor([0, 0, 3, 3, 7, 7, 11, 11])
    out = NetOutput(features=feats, embeddings=emb, logits=torch.zeros(8, 12))
    value = recipe(out, labels)[0].item()
    assert value == pytest.approx(hpl(emb, labels).item(), rel=1e-6)
    assert value != pytest.approx(hpl(feats, labels).item(), rel=1e-3)


def test_base_options_reach_the_base_loss() -> None:
    hpl = the_hpl(hpl_recipe(10, 4, base_options={"alpha": 16.0, "delta": 0.2}))
    assert isinstance(hpl.base, ProxyAnchorLoss)
    assert (hpl.base.alpha, hpl.base.delta) == (16.0, 0.2)


@pytest.mark.parametrize("learnable", [False, True])
def test_proxy_groups_listed_once_at_100x(learnable: bool) -> None:
    recipe = hpl_recipe(10, 4, learnable_coarse=learnable)
    hpl = the_hpl(recipe)
    groups = recipe.param_groups(base_lr=3e-4)
    want = [[hpl.base.proxies]] + ([[hpl.learned_coarse]] if learnable else [])
    assert [g["params"] for g in groups] == want
    assert all(g["lr"] == pytest.approx(3e-2) for g in groups)


def test_level_weights_from_a_yaml_list() -> None:
    hpl = the_hpl(hpl_recipe(10, 4, level_weights=[1.0, 0.25]))
    assert hpl.level_weights == (1.0, 0.25)
    with pytest.raises(ValueError, match="w_fine, w_coarse"):
        hpl_recipe(10, 4, level_weights=[1.0, 0.1, 0.01])


def test_unknown_base_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown base proxy loss"):
        hpl_recipe(10, 4, base="softtriple")
