"""``python -m model.train --config configs/market1501_r50.yaml [key.sub=value ...]``.

Multi-GPU: ``torchrun --nproc_per_node=N -m model.train --config ...``. Re-running the same
command with the same ``output_dir`` resumes from its ``last.pt``.
"""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from model.config.train_config import load_config, to_dict
from model.engine.distributed import cleanup
from model.engine.trainer import BEST_METRIC
from model.engine.trainer_builder import build_trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__)
    parser.add_argument("--config", help="YAML training config (default: the reference recipe)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. solver.epochs=10 data.root=/data/m"
    )
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing last.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cfg = load_config(args.config, args.overrides)
    trainer = build_trainer(cfg, resume=not args.no_resume)
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
            ckpt = trainer.checkpoints
            print(f"best held-out {BEST_METRIC}: {trainer.best_metric:.4f}")
            print(f"checkpoints: {ckpt.last_path} (last), {ckpt.best_path} (best)")
            print(f"metrics: {trainer.metrics_log.csv_path}")
    finally:
        trainer.metrics_log.close()
        cleanup(trainer.dist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
