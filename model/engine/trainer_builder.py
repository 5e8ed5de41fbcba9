"""The one place a training config becomes objects: data, network, loss, optimiser, schedule,
evaluation, logs and checkpoints, assembled into a :class:`~model.engine.trainer.Trainer`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from model.config.train_config import SolverConfig, TrainConfig, to_dict
from model.data.dataset_split import DatasetSplit
from model.engine.checkpoint import CheckpointManager
from model.engine.distributed import (
    DistInfo,
    choose_device,
    dist_info_from_env,
    init_distributed,
    wrap_ddp,
)
from model.engine.held_out_evaluator import build_evaluator
from model.engine.metrics_log import MetricsLog
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
    loss steps itself (centers) is in none of them."""
    net_params = [p for p in net.parameters() if p.requires_grad]
    groups = [{"params": net_params}, *loss.param_groups(cfg.base_lr)]
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
    named in the config (tests pass one built in a temporary folder).
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
        config_dict=to_dict(cfg),
        label_map=label_map,
        progress=cfg.progress,
    )
    if resume:
        trainer.resume()
    return trainer
