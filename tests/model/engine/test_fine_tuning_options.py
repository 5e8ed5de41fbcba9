"""Fine-tuning options: a frozen backbone does not move, frozen batch-norm statistics do not
move (and do without the option), the backbone's lr multiplier is its own optimiser group; every
backbone trains by name alone, and an option a backbone does not take is named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from model.config.train_config import ConfigError, LossConfig, ModelConfig, SolverConfig
from model.engine.registries import build_loss, build_model
from model.engine.trainer_builder import build_optimizer
from model.modeling.backbones.registry import BACKBONES

INPUT = (32, 32)
CLASSES = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny batches: on a busy 2-core machine torch's thread pool costs 10-20x the arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def one_step(net: nn.Module, *, lr_multiplier: float = 1.0) -> torch.optim.Optimizer:
    """One CTL step on a P×K = 4×2 batch of random images, as the trainer steps (train mode)."""
    loss = build_loss(LossConfig(), CLASSES, int(net.embedding_dim), seed=0)
    optimizer = build_optimizer(
        net, loss, SolverConfig(base_lr=1e-2, backbone_lr_multiplier=lr_multiplier)
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 3, *INPUT, generator=generator)
    labels = torch.arange(CLASSES).repeat_interleave(2)
    net.train()  # the trainer's per-epoch call: frozen layers must stay frozen through it
    optimizer.zero_grad()
    total, _ = loss(net(images), labels)
    total.backward()
    optimizer.step()
    loss.after_backward(torch.amp.GradScaler("cuda", enabled=False))
    return optimizer


def tiny(**options: object) -> nn.Module:
    cfg = ModelConfig(backbone="tiny_cnn", backbone_kwargs={"out_channels": 16}, **options)  # type: ignore[arg-type]
    return build_model(cfg, CLASSES, INPUT, load_pretrained=True)


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def bn_statistics(module: nn.Module) -> set[str]:
    return {
        f"{name}.{stat}"
        for name, m in module.named_modules()
        if isinstance(m, _BatchNorm)
        for stat in ("running_mean", "running_var")
    }


def test_frozen_backbone_gets_no_update_while_the_rest_learns() -> None:
    torch.manual_seed(0)
    net = tiny(freeze_backbone=True)
    backbone = net.backbone
    assert isinstance(backbone, nn.Module)
    before, before_net = snapshot(backbone), snapshot(net)
    optimizer = one_step(net)
    assert changed(before, backbone) == set()  # weights and BN statistics alike
    in_groups = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_groups & {id(p) for p in backbone.parameters()}
    moved = changed(before_net, net)
    assert "bn_neck.bn.weight" in moved or any(k.startswith("bn_neck") for k in moved), moved
    assert "classifier.weight" in moved


def test_frozen_batch_norm_keeps_running_statistics_and_trains_the_weights() -> None:
    torch.manual_seed(0)
    frozen, free = tiny(freeze_backbone_bn=True), tiny()
    free.load_state_dict(frozen.state_dict())
    stats = {f"backbone.{k}" for k in bn_statistics(frozen.backbone)}
    assert len(stats) == 6  # three conv-BN layers
    before_frozen, before_free = snapshot(frozen), snapshot(free)
    one_step(frozen)
    one_step(free)
    moved_frozen, moved_free = changed(before_frozen, frozen), changed(before_free, free)
    assert not stats & moved_frozen, sorted(stats & moved_frozen)
    assert stats <= moved_free, sorted(stats - moved_free)
    # Only the statistics are frozen: the convolutions and BN affine weights still learn.
    assert "backbone.layers.0.weight" in moved_frozen
    assert "backbone.layers.1.weight" in moved_frozen
    bns = [m for m in frozen.backbone.modules() if isinstance(m, _BatchNorm)]
    assert frozen.training and not any(m.training for m in bns)


def test_backbone_lr_multiplier_is_the_backbones_own_group() -> None:
    net = tiny()
    optimizer = one_step(net, lr_multiplier=0.1)
    backbone_ids = {id(p) for p in net.backbone.parameters()}
    head_ids = {id(p) for p in net.parameters() if p.requires_grad} - backbone_ids
    groups = optimizer.param_groups
    assert {id(p) for p in groups[0]["params"]} == head_ids and groups[0]["lr"] == 1e-2
    assert {id(p) for p in groups[1]["params"]} == backbone_ids
    assert groups[1]["lr"] == pytest.approx(1e-3)
    assert len(groups) == 2  # the CTL's centers have their own SGD, in no group
    with pytest.raises(ValueError, match="freeze_backbone"):
        one_step(tiny(), lr_multiplier=0.0)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_by_name_alone(name: str) -> None:
    net = build_model(ModelConfig(backbone=name), CLASSES, (64, 64), load_pretrained=True)
    assert net.embedding_dim == net.backbone.out_channels


def test_efficientnet_lite0_fine_tunes_by_name_and_refuses_a_resnet_option() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="efficientnet_lite0", freeze_backbone_bn=True)
    net = build_model(cfg, CLASSES, INPUT, load_pretrained=True)
    stats = {f"backbone.{k}" for k in bn_statistics(net.backbone)}
    before = snapshot(net)
    one_step(net, lr_multiplier=0.1)
    moved = changed(before, net)
    assert stats and not stats & moved
    assert "backbone.model.conv_stem.weight" in moved
    bad = ModelConfig(backbone="efficientnet_lite0", backbone_kwargs={"last_stride": 1})
    with pytest.raises(
        ConfigError, match=r"'efficientnet_lite0' takes no option 'last_stride'.*pretrained"
    ):
        build_model(bad, CLASSES, INPUT, load_pretrained=True)


def test_cli_help_lists_every_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    from model.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        f"backbones (model.backbone=NAME, nothing else needed): {', '.join(sorted(BACKBONES))}"
        in shown
    )
