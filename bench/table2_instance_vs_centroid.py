"""The CTL paper's Table 2 in small: instance vs centroid retrieval with the same trained model.

Trains the tiny CPU model on the Market-layout sample (or loads ``--checkpoint``), embeds the
held-out query and gallery images once, and compares — on those same embeddings — ranking all
gallery images (FAISS flat inner product) against ranking item centroids (the service's
``FlatCentroidIndex``): mAP, Rank-1, time to search all queries and bytes of gallery index.

    python -m bench.table2_instance_vs_centroid                 # train the tiny demo first
    python -m bench.table2_instance_vs_centroid --checkpoint runs/x/best.pt [key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.instance_vs_centroid import format_report, run_comparison
from model.config.train_config import load_config
from model.data.market_sample import write_market_sample
from model.engine.checkpoint import load_checkpoint, load_model_from_checkpoint
from model.engine.registries import read_dataset
from model.engine.trainer_builder import build_trainer
from model.evaluation.embed_split import torch_embedder

ROOT = Path(__file__).resolve().parents[1]


def train_demo(work: Path, epochs: int) -> Path:
    """The tiny CPU demo on a fresh Market-layout sample; returns its best checkpoint."""
    data = write_market_sample(work / "market_sample")
    cfg = load_config(
        ROOT / "configs" / "tiny_cpu_demo.yaml",
        [f"data.root={data}", f"output_dir={work / 'run'}", "progress=false",
         f"solver.epochs={epochs}"],
    )  # fmt: skip
    trainer = build_trainer(cfg)
    trainer.fit(cfg.solver.epochs)
    trainer.metrics_log.close()
    return Path(cfg.output_dir) / "best.pt"


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.table2_instance_vs_centroid", description=__doc__
    )
    parser.add_argument("--checkpoint", type=Path, help="a trained model (default: train one)")
    parser.add_argument("--epochs", type=int, default=16, help="epochs when training the demo")
    parser.add_argument("overrides", nargs="*", help="data overrides, e.g. data.root=...")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or train_demo(Path(tmp), args.epochs)
        base = load_checkpoint(ckpt)["config"]
        cfg = load_config(None, args.overrides, base=base)
        split = read_dataset(cfg.data)
        net, trained = load_model_from_checkpoint(ckpt)
        embed = torch_embedder(net, trained.data.input_size, batch_size=cfg.data.eval_batch_size)
        q, g = split.query, split.gallery
        print(
            f"{split.name}: {len(q)} queries, {len(g)} gallery images of "
            f"{len({s.item for s in g if not s.is_distractor})} items + "
            f"{sum(s.is_distractor for s in g)} distractors; "
            f"model {ckpt}"
        )
        result = run_comparison(
            embed(q),
            np.array([s.item for s in q]),
            np.array([s.camera for s in q]),
            embed(g),
            np.array([s.item for s in g]),
            np.array([s.camera for s in g]),
            np.array([s.is_distractor for s in g]),
            cross_camera=split.protocol == "reid",
        )
        print(format_report(result))


if __name__ == "__main__":
    main()
