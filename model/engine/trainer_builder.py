"""The one place a training config becomes objects: data, network, loss, optimiser, schedule,
evaluation, logs and checkpoints, assembled into a :class:`~model.engine.trainer.Trainer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config.train_config import SolverConfig, TrainConfig, to_dict
from model.data.dataset_split import DatasetSplit
from model.engine.checkpoint import CheckpointManager
from model.engine.distributed import (
    DistInfo,
    barrier,
    choose_device,
    dist_info_from_env,
    init_distributed,
    wrap_ddp,
)
from model.engine.held_out_evaluator import build_evaluator
from model.engine.metrics_log import MetricsLog
from model.engine.output_dir_guard import OVERWRITE, prepare_output_dir
from model.engine.registries import build_loss, build_model, read_dataset
from model.engine.seeding import seed_everything
from model.engine.train_loader import make_train_loader
from model.engine.trainer import Trainer
from model.losses.weighted_loss_sum import WeightedLossSum
from model.solver.optimizer import make_optimizer
from model.solver.warmup_multistep_lr import WarmupMultiStepLR


def label_map_of(split: DatasetSplit) -> dict[str, int]:
    """Training items → contiguous class ids, in sorted item order (deterministic)."""
    return {item: i for i, item in enumerate(sorted({s.item for s in split.train}))}


def build_optimizer(
    net: nn.Module, loss: WeightedLossSum, cfg: SolverConfig
) -> torch.optim.Optimizer:
    """Adam over the network's trainable parameters (at the base lr) and the groups the loss
    asks for (:meth:`WeightedLossSum.param_groups`: proxies at their own lr). Loss state the
    loss steps itself (centers) is in none of them.

    With ``cfg.backbone_lr_multiplier`` ≠ 1 the backbone's trainable parameters are a second
    group of their own at ``base_lr × multiplier``; the rest of the network (neck, heads) stays
    first, at the base lr (the lr the trainer logs). Frozen parameters (``requires_grad``
    off) are in no group, so neither Adam nor its weight decay ever touches them."""
    multiplier = cfg.backbone_lr_multiplier
    if multiplier <= 0.0:
        raise ValueError(
            f"solver.backbone_lr_multiplier must be positive, got {multiplier} "
            "(model.freeze_backbone=true stops the backbone from learning)"
        )
    backbone = getattr(net, "backbone", None)
    split = multiplier != 1.0 and isinstance(backbone, nn.Module)
    in_backbone = {id(p) for p in backbone.parameters()} if split and backbone else set()
    net_params = [p for p in net.parameters() if p.requires_grad and id(p) not in in_backbone]
    groups: list[dict[str, Any]] = [{"params": net_params}]
    if split and backbone is not None:
        backbone_params = [p for p in backbone.parameters() if p.requires_grad]
        if backbone_params:
            groups.append({"params": backbone_params, "lr": cfg.base_lr * multiplier})
    groups += loss.param_groups(cfg.base_lr)
    return make_optimizer(groups, cfg.base_lr, cfg.weight_decay)


def build_trainer(
    cfg: TrainConfig,
    *,
    dist: DistInfo | None = None,
    split: DatasetSplit | None = None,
    resume: bool = True,
) -> Trainer:
    """Config → data, network, loss, optimisers, schedule, evaluation, logs, checkpoints.

    Under torchrun the process group is joined here. ``split`` overrides reading the dataset
    named in the config (tests pass one built in a temporary folder). A run already in
    ``cfg.output_dir`` is resumed, refused or deleted as ``cfg.existing_output`` says
    (:func:`~model.engine.output_dir_guard.prepare_output_dir`); ``resume=False`` is
    ``existing_output=overwrite``.
    """
    dist = dist if dist is not None else dist_info_from_env()
    device = choose_device(cfg.device, dist)
    init_distributed(dist, device)
    seed_everything(cfg.seed)
    split = split if split is not None else read_dataset(cfg.data)
    label_map = label_map_of(split)
    if len(label_map) < 2:
        raise ValueError(f"{split.name}: training needs at least 2 items, found {len(label_map)}")

    net = build_model(cfg.model, len(label_map), cfg.data.input_size, load_pretrained=True)
    loss = build_loss(cfg.loss, len(label_map), int(net.embedding_dim), cfg.seed)
    net.to(device)
    loss.to(device)

    optimizer = build_optimizer(net, loss, cfg.solver)
    scheduler = WarmupMultiStepLR(
        optimizer,
        milestones=cfg.solver.milestones,
        gamma=cfg.solver.gamma,
        warmup_factor=cfg.solver.warmup_factor,
        warmup_epochs=cfg.solver.warmup_epochs,
    )

    backbone = net.backbone
    assert isinstance(backbone, nn.Module)
    loader, sampler = make_train_loader(split, label_map, cfg, backbone.mean, dist)
    out_dir = Path(cfg.output_dir)
    config_dict = to_dict(cfg)
    mode = cfg.existing_output if resume else OVERWRITE
    prepare_output_dir(out_dir, config_dict, mode, may_delete=dist.is_main)
    barrier(dist)  # no rank reads last.pt before rank 0 has deleted it
    trainer = Trainer(
        net=wrap_ddp(net, dist, device),
        loss=loss,
        optimizer=optimizer,
        scheduler=scheduler,
        train_loader=loader,
        sampler=sampler,
        evaluator=build_evaluator(split, cfg, device),
        metrics_log=MetricsLog(out_dir, enabled=dist.is_main),
        checkpoints=CheckpointManager(
            out_dir, enabled=dist.is_main, keep_epochs=cfg.keep_epoch_checkpoints
        ),
        device=device,
        amp=cfg.amp,
        dist=dist,
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every,
        seed=cfg.seed,
        config_dict=config_dict,
        label_map=label_map,
        progress=cfg.progress,
        log_every=cfg.log_every,
        best_metric_key=cfg.best_metric,
    )
    if resume:
        trainer.resume()
    return trainer
