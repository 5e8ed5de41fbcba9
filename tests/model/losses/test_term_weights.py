"""Switching loss terms off and reweighting them from the config: weight 0 leaves the term out
(no value, no optimiser group, no optimiser of its own), the total is the hand-computed sum of
the rest, and mistakes are named instead of surfacing as a TypeError."""

from __future__ import annotations

import pytest
import torch

from model.config.train_config import ConfigError, LossConfig, load_config
from model.engine.registries import build_loss
from model.losses.cross_entropy_label_smooth import CrossEntropyLabelSmooth
from model.losses.loss_term import LossTerm
from model.losses.output_selectors import EMBEDDINGS, LOGITS
from model.losses.proxy_anchor_loss import ProxyAnchorLoss
from model.losses.term_weights import with_term_weights
from model.losses.weighted_loss_sum import WeightedLossSum
from model.modeling.net_output import NetOutput

CLASSES, DIM = 3, 4


def batch() -> tuple[NetOutput, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(6, DIM, generator=g, requires_grad=True)
    output = NetOutput(
        features, torch.randn(6, DIM, generator=g), torch.randn(6, CLASSES, generator=g)
    )
    return output, torch.tensor([0, 0, 1, 1, 2, 2])


def test_ctl_term_at_weight_0_is_not_built_and_the_total_is_the_rest() -> None:
    torch.manual_seed(0)  # the same random centers in both
    full = build_loss(LossConfig(), CLASSES, DIM, seed=0)
    cfg = load_config(None, ["loss.weights.triplet=0", "loss.weights.centroid_triplet=2.5"])
    torch.manual_seed(0)
    reduced = build_loss(cfg.loss, CLASSES, DIM, seed=0)
    assert [t.name for t in reduced.terms] == ["cross_entropy", "center", "centroid_triplet"]
    assert "losses.triplet" not in {n.rsplit(".", 1)[0] for n, _ in reduced.named_modules()}
    output, labels = batch()
    _, parts = full(output, labels)
    total, reduced_parts = reduced(output, labels)
    assert set(reduced_parts) == {"cross_entropy", "center", "centroid_triplet"}
    # The oracle: the unweighted values of the full loss, weighted by hand.
    expected = parts["cross_entropy"] + 5e-4 * parts["center"] + 2.5 * parts["centroid_triplet"]
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)


def test_center_loss_off_takes_its_own_optimiser_with_it() -> None:
    for overrides in (["loss.center_weight=0"], ["loss.weights.center=0"]):
        loss = build_loss(load_config(None, overrides).loss, CLASSES, DIM, seed=0)
        assert "center" not in [t.name for t in loss.terms]
        assert loss.optimizer_state_dict() == {}
        assert list(loss.parameters()) == []  # the centers were the CTL's only loss state
        output, labels = batch()
        total, _ = loss(output, labels)
        total.backward()
        loss.after_backward(torch.amp.GradScaler("cuda", enabled=False))  # nothing to step


def test_proxy_term_off_takes_its_parameter_group_with_it() -> None:
    proxies = ProxyAnchorLoss(CLASSES, DIM)
    loss = WeightedLossSum(
        [
            LossTerm("ce", 1.0, CrossEntropyLabelSmooth(CLASSES), LOGITS),
            LossTerm("proxy", 1.0, proxies, EMBEDDINGS, needs=proxies),
        ]
    )
    assert [g["params"] for g in loss.param_groups(1e-3)] == [[proxies.proxies]]
    off = with_term_weights(loss, {"proxy": 0.0})
    assert off.param_groups(1e-3) == [] and list(off.parameters()) == []
    assert with_term_weights(loss, {}) is loss


def test_mistakes_are_named() -> None:
    # What a user tried first: the weight as a recipe option (a raw TypeError before).
    cfg = load_config(None, ["loss.options.triplet_weight=0"])
    with pytest.raises(ConfigError, match=r"'triplet_weight'.*loss\.weights\.<term>"):
        build_loss(cfg.loss, CLASSES, DIM, seed=0)
    with pytest.raises(ValueError, match=r"no term 'tripplet'.*cross_entropy, triplet, center"):
        build_loss(load_config(None, ["loss.weights.tripplet=0"]).loss, CLASSES, DIM, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        build_loss(load_config(None, ["loss.weights.triplet=-1"]).loss, CLASSES, DIM, seed=0)
    with pytest.raises(ValueError, match="every loss term has weight 0"):
        build_loss(load_config(None, ["loss.recipe=hpl", "loss.weights.hpl=0"]).loss, 4, DIM, 0)
