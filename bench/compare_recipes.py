"""CTL vs HPL (on Proxy-Anchor) vs the two-head ranking regularizer, same budget, on CPU.

Same backbone (the tiny CNN, from scratch), same data (regions of the photos scikit-image and
scikit-learn ship, random views of each; held-out items come from other whole photos), same
input size, batches, epochs and schedule; only the recipe (network head + loss) differs. Prints
held-out centroid mAP and Recall@1 (centroid Rank-1) and training wall time.

    python -m bench.compare_recipes [--epochs 12] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from model.config.train_config import load_config
from model.data.sample_photos import load_photo, photo_regions, write_views
from model.engine.trainer_builder import build_trainer

TRAIN_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "coins",
    "hubble_deep_field", "immunohistochemistry", "brick", "clock", "grass", "gravel",
)  # fmt: skip
HELDOUT_PHOTOS = ("china", "flower", "stereo_motorcycle", "retina", "moon", "page", "text", "cell")
GRID = (2, 2)

# recipe -> overrides on top of the shared settings. The two-head model's embedding head is
# the "pooled" variant (a 4×2 grid of the map → 256-d) so it stays small at 64×64.
RECIPES: dict[str, list[str]] = {
    "CTL": ["model.name=bnneck", "loss.recipe=ctl"],
    "HPL (Proxy-Anchor)": [
        "model.name=bnneck",
        "loss.recipe=hpl",
        "loss.options={base: proxy_anchor, refresh_every: 20}",
    ],
    "Two-head (batch-hard)": [
        "model.name=two_head",
        "model.head=pooled",
        "model.embedding_dim=64",
        "loss.recipe=ranking_regularizer",
        "loss.options={mining: batch_hard}",
    ],
}


def write_dataset(root: Path, seed: int = 0) -> Path:
    def regions(names: tuple[str, ...]) -> dict[str, object]:
        return {
            f"{n}-{i}": r for n in names for i, r in enumerate(photo_regions(load_photo(n), GRID))
        }

    write_views(root / "train", regions(TRAIN_PHOTOS), 6, seed, max_side=96)  # type: ignore[arg-type]
    write_views(root / "gallery", regions(HELDOUT_PHOTOS), 4, seed + 1, max_side=96)  # type: ignore[arg-type]
    write_views(root / "query", regions(HELDOUT_PHOTOS), 2, seed + 2, max_side=96)  # type: ignore[arg-type]
    return root


def shared(root: Path, out: Path, epochs: int, seed: int) -> list[str]:
    return [
        "data.dataset=folder",
        f"data.root={root}",
        "data.input_size=[64, 64]",
        "data.p=8",
        "data.k=4",
        "data.num_workers=0",
        "model.backbone=tiny_cnn",
        "model.backbone_kwargs={}",
        f"solver.epochs={epochs}",
        "solver.base_lr=0.003",
        "solver.warmup_epochs=1",
        f"solver.milestones=[{max(1, epochs - 3)}]",
        f"eval_every={epochs}",
        f"checkpoint_every={epochs}",
        f"output_dir={out}",
        "progress=false",
        f"seed={seed}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_recipes", description=__doc__)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = write_dataset(Path(tmp) / "data")
        for name, overrides in RECIPES.items():
            maps, r1s, secs = [], [], []
            for seed in args.seeds:
                out = Path(tmp) / f"run-{len(rows)}-{seed}"
                cfg = load_config(None, [*shared(root, out, args.epochs, seed), *overrides])
                trainer = build_trainer(cfg)
                started = time.perf_counter()
                summaries = trainer.fit(cfg.solver.epochs)
                secs.append(time.perf_counter() - started)
                final = summaries[-1].values
                maps.append(final["eval/centroid/mAP"])
                r1s.append(final["eval/centroid/rank1"])
                trainer.metrics_log.close()
            rows.append((name, maps, r1s, secs))
    n_items = len(HELDOUT_PHOTOS) * GRID[0] * GRID[1]
    print(
        f"\n{len(TRAIN_PHOTOS) * 4} training items, {n_items} held-out items (other photos); "
        f"tiny CNN, 64×64, P×K 8×4, {args.epochs} epochs, seeds {args.seeds}; mean ± std\n"
    )
    print(f"| {'recipe':<22} | {'centroid mAP':>14} | {'Recall@1':>14} | {'train time':>11} |")
    print(f"|{'-' * 24}|{'-' * 16}|{'-' * 16}|{'-' * 13}|")
    for name, maps, r1s, secs in rows:
        print(
            f"| {name:<22} | {100 * np.mean(maps):>6.1f} ± {100 * np.std(maps):>4.1f} "
            f"| {100 * np.mean(r1s):>7.1f} ± {100 * np.std(r1s):>4.1f} "
            f"| {np.mean(secs):>9.1f} s |"
        )


if __name__ == "__main__":
    main()
