"""The CPU fine-tuning preset loads, builds and takes one training step on a tiny Market-layout
sample; what the step may move is what the preset says (its accuracy is bench.finetune's)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from model.config.train_config import load_config
from model.data.market_sample import write_market_sample
from model.engine.trainer_builder import build_trainer

PRESET = Path(__file__).resolve().parents[3] / "configs" / "efficientnet_lite0_finetune_cpu.yaml"


def test_preset_runs_one_step_with_backbone_statistics_frozen(tmp_path: Path) -> None:
    root = write_market_sample(
        tmp_path / "sample",
        train_photos=1,
        train_views=4,
        gallery_views=1,
        query_views=1,
        distractors=0,
        junk=0,
    )
    cfg = load_config(
        PRESET,
        [f"data.root={root}", f"output_dir={tmp_path / 'run'}", "data.num_workers=0"],
    )
    assert cfg.model.backbone == "efficientnet_lite0"
    assert cfg.model.freeze_backbone_bn
    trainer = build_trainer(cfg)
    net = trainer.model
    backbone = net.backbone
    assert isinstance(backbone, torch.nn.Module)
    # The backbone in a group of its own at the preset's fraction of the head's rate.
    backbone_ids = {id(p) for p in backbone.parameters()}
    rates = {
        all(id(p) in backbone_ids for p in g["params"]): g["lr"]
        for g in trainer.optimizer.param_groups
    }
    multiplier = cfg.solver.backbone_lr_multiplier
    assert multiplier < 1 and rates[True] == rates[False] * multiplier
    stats = {
        name: (m.running_mean.clone(), m.running_var.clone())  # type: ignore[union-attr]
        for name, m in backbone.named_modules()
        if isinstance(m, _BatchNorm)
    }
    weights = {k: v.detach().clone() for k, v in backbone.named_parameters()}
    net.train()
    images, labels, _ = next(iter(trainer.train_loader))
    assert images.shape[1:] == (3, *cfg.data.input_size)
    assert images.shape[0] == cfg.data.p * cfg.data.k
    parts = trainer.step(images, labels)

    assert torch.isfinite(torch.tensor(parts["total"]))
    for name, term in cfg.loss.weights.items():
        if term == 0:
            assert name not in parts, f"{name} is switched off by the preset"
    moved = [k for k, v in backbone.named_parameters() if not torch.equal(v, weights[k])]
    assert moved, "the backbone's weights learn"
    for name, m in backbone.named_modules():
        if isinstance(m, _BatchNorm):
            mean, var = stats[name]
            assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var), name  # type: ignore[arg-type]
