"""Does the CPU fine-tuning preset beat the untrained EfficientNet-Lite0 on unseen identities?

For each sample (a Market-layout set written by ``model.data.market_sample`` with its own
``--seed``: training identities and test identities come from different photos), this trains
the untrained starting point (``solver.epochs=0``) and the preset for each training seed, each
run as its own ``python -m model.train`` process, scores each run's ``last.pt`` with
``python -m model.evaluate`` (the last epoch, never the held-out-selected ``best.pt``: picking
the epoch on the test identities would flatter the gain), and prints untrained vs fine-tuned
centroid mAP, instance mAP and centroid R@1 (mean and spread over seeds), the gain against the
+5-point target and each run's wall and CPU time against the 20-minute budget. CPU time (user +
system of the training process and its loader workers) is what a busy machine inflates least.

    nice -n 19 python -m bench.finetune                       # samples 1 and 2, seeds 0 1 2
    python -m bench.finetune --samples 1 --seeds 0 loss.weights.center=1   # an ablation

Extra ``key=value`` arguments override the preset (the ablations in the README's table).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from model.data.market_sample import write_market_sample

PRESET = Path("configs/efficientnet_lite0_finetune_cpu.yaml")
# The targets: >= 5 points of centroid mAP over the untrained backbone, in 20 minutes.
TARGET_GAIN = 0.05
TARGET_WALL_S = 20 * 60
# (key in model.evaluate's JSON, column title)
METRICS = (
    ("centroid/mAP", "centroid mAP"),
    ("instance/mAP", "instance mAP"),
    ("centroid/rank1", "centroid R@1"),
)


@dataclass(frozen=True)
class Run:
    metrics: dict[str, float]
    wall_s: float
    cpu_s: float


def _timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` (output to ``log``); its wall time and the CPU time of it and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}); see {log}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def train_and_score(
    config: Path, root: Path, out: Path, seed: int, overrides: list[str], *, epochs: int | None
) -> Run:
    """One ``model.train`` run (timed) and ``model.evaluate`` of its ``last.pt``."""
    python = sys.executable
    extra = [f"solver.epochs={epochs}"] if epochs is not None else []
    train = [
        python, "-m", "model.train", "--config", str(config), "--overwrite",
        f"data.root={root}", f"output_dir={out}", f"seed={seed}", "progress=false",
        *overrides, *extra,
    ]  # fmt: skip
    wall, cpu = _timed(train, out.with_suffix(".train.log"))
    scores = out.with_suffix(".json")
    evaluate = [
        python, "-m", "model.evaluate", "--checkpoint", str(out / "last.pt"), "--no-nmi",
        "--json", str(scores), f"data.root={root}",
    ]  # fmt: skip
    _timed(evaluate, out.with_suffix(".evaluate.log"))
    metrics = json.loads(scores.read_text())["metrics"]
    return Run({k: float(metrics[k]) for k, _ in METRICS}, wall, cpu)


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:6.1f} ± {100 * std:3.1f}"


def report(sample_seed: int, sizes: dict[str, int], untrained: Run, runs: list[Run]) -> bool:
    """Print one sample's table and verdicts; True when both targets are met."""
    print(
        f"\nsample --seed {sample_seed}: {sizes['train']} training images, {sizes['query']} "
        f"queries, {sizes['gallery']} gallery images (unseen identities); "
        f"{len(runs)} fine-tuning seed(s); mean ± std over seeds, in points"
    )
    print(f"| {'model':<12} | " + " | ".join(f"{t:>13}" for _, t in METRICS) + " |")
    print("|" + "|".join("-" * (w + 2) for w in (12, *(13,) * len(METRICS))) + "|")
    print(
        f"| {'untrained':<12} | "
        + " | ".join(f"{100 * untrained.metrics[k]:13.1f}" for k, _ in METRICS)
        + " |"
    )
    print(
        f"| {'fine-tuned':<12} | "
        + " | ".join(f"{_spread([r.metrics[k] for r in runs]):>13}" for k, _ in METRICS)
        + " |"
    )
    gains = [r.metrics["centroid/mAP"] - untrained.metrics["centroid/mAP"] for r in runs]
    gain = statistics.fmean(gains)
    gain_ok = gain >= TARGET_GAIN
    print(
        f"centroid mAP gain: {100 * gain:+.1f} points (per seed "
        f"{', '.join(f'{100 * g:+.1f}' for g in gains)}; worst {100 * min(gains):+.1f}) — "
        f"{'MET' if gain_ok else 'NOT met'} (target >= +{100 * TARGET_GAIN:.0f})"
    )
    walls = [r.wall_s for r in runs]
    time_ok = max(walls) <= TARGET_WALL_S
    print(
        "training time per run: wall "
        + ", ".join(f"{w / 60:.1f}" for w in walls)
        + " min, CPU "
        + ", ".join(f"{r.cpu_s / 60:.1f}" for r in runs)
        + f" min (2 cores: CPU / 2 is the unloaded wall floor) — "
        f"{'MET' if time_ok else 'NOT met'} (target <= {TARGET_WALL_S / 60:.0f} min wall; "
        f"load average now {os.getloadavg()[0]:.1f})"
    )
    return gain_ok and time_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune", description=__doc__)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the preset")
    parser.add_argument("--config", type=Path, default=PRESET)
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 2], help="sample --seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--train-views", type=int, default=8)
    parser.add_argument("--gallery-views", type=int, default=5)
    parser.add_argument("--query-views", type=int, default=2)
    parser.add_argument("--work", type=Path, help="keep samples, runs and logs here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ok = True
        for sample_seed in args.samples:
            root = write_market_sample(
                work / f"sample{sample_seed}",
                seed=sample_seed,
                train_views=args.train_views,
                gallery_views=args.gallery_views,
                query_views=args.query_views,
            )
            sizes = {
                name: len(list((root / d).glob("*.jpg")))
                for name, d in (
                    ("train", "bounding_box_train"),
                    ("query", "query"),
                    ("gallery", "bounding_box_test"),
                )
            }
            runs_dir = work / f"runs{sample_seed}"
            runs_dir.mkdir(exist_ok=True)
            untrained = train_and_score(
                args.config, root, runs_dir / "untrained", 0, args.overrides, epochs=0
            )
            runs = []
            for seed in args.seeds:
                runs.append(
                    train_and_score(
                        args.config,
                        root,
                        runs_dir / f"seed{seed}",
                        seed,
                        args.overrides,
                        epochs=None,
                    )
                )
                print(
                    f"sample {sample_seed} seed {seed}: centroid mAP "
                    f"{100 * runs[-1].metrics['centroid/mAP']:.1f} "
                    f"(untrained {100 * untrained.metrics['centroid/mAP']:.1f}), wall "
                    f"{runs[-1].wall_s / 60:.1f} min, CPU {runs[-1].cpu_s / 60:.1f} min",
                    flush=True,
                )
            ok = report(sample_seed, sizes, untrained, runs) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
