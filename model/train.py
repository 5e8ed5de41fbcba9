"""``python -m model.train --config configs/market1501_r50.yaml [key.sub=value ...]``.

Multi-GPU: ``torchrun --nproc_per_node=N -m model.train --config ...``. Re-running the same
command with the same ``output_dir`` resumes from its ``last.pt``; with a changed config it
stops and names the keys that differ, unless ``--resume`` or ``--overwrite`` says what to do.
"""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from model.config.train_config import load_config, to_dict
from model.engine.distributed import cleanup
from model.engine.output_dir_guard import OVERWRITE, RESUME
from model.engine.trainer import Trainer
from model.engine.trainer_builder import build_trainer
from model.modeling.backbones.registry import BACKBONES

EPILOG = (
    f"backbones (model.backbone=NAME, nothing else needed): {', '.join(sorted(BACKBONES))}; "
    "efficientnet_lite0 is the service's default model, with its packaged ImageNet weights. "
    "Fine-tuning: model.freeze_backbone=true, model.freeze_backbone_bn=true, "
    "solver.backbone_lr_multiplier=0.1; a loss term off: loss.weights.center=0. "
    "solver.epochs=0 writes and scores the untrained network. model/config/train_config.py "
    "lists every key."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.train", description=__doc__, epilog=EPILOG
    )
    parser.add_argument("--config", help="YAML training config (default: the reference recipe)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. solver.epochs=10 data.root=/data/m"
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="resume output_dir/last.pt even if the config changed (existing_output=resume)",
    )
    existing.add_argument(
        "--overwrite",
        "--no-resume",
        action="store_true",
        help="delete the run in output_dir and start over (existing_output=overwrite)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"existing_output={RESUME}")
    if args.overwrite:
        overrides.append(f"existing_output={OVERWRITE}")
    cfg = load_config(args.config, overrides)
    trainer = build_trainer(cfg)
    try:
        if trainer.dist.is_main:
            print("resolved config:\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            loader = trainer.train_loader
            print(
                f"train: {len(trainer.label_map)} items, {len(loader.dataset)} images, "  # type: ignore[arg-type]
                f"{len(loader)} batches/epoch of P×K = {cfg.data.p}×{cfg.data.k}; "
                f"device {trainer.device}, world size {trainer.dist.world_size}, "
                f"amp {trainer.amp}, starting at epoch {trainer.start_epoch}",
                flush=True,
            )
        trainer.fit(cfg.solver.epochs)
        if trainer.dist.is_main:
            print_outcome(trainer)
    finally:
        trainer.metrics_log.close()
        cleanup(trainer.dist)
    return 0


def print_outcome(trainer: Trainer) -> None:
    """The best figure and the checkpoints the run has: only files that exist are named."""
    ckpt = trainer.checkpoints
    if trainer.evaluator is None:
        print("no held-out split: nothing was evaluated, so there is no best.pt")
    elif trainer.best_metric == float("-inf"):
        print("the held-out evaluation scored nothing (no readable images): no best.pt")
    else:
        print(f"best held-out {trainer.best_metric_key}: {trainer.best_metric:.4f}")
    files = [(ckpt.last_path, "last"), (ckpt.best_path, "best")]
    named = [f"{path} ({role})" for path, role in files if path.is_file()]
    print(f"checkpoints: {', '.join(named) if named else 'none'}")
    print(f"metrics: {trainer.metrics_log.csv_path}")


if __name__ == "__main__":
    sys.exit(main())
