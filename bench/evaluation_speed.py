"""Held-out evaluation speed, torch path vs ONNX path, one model on the same images::

    python -m bench.evaluation_speed [--data ROOT] [--onnx models/default/embedder.onnx]
        [--images N] [--rounds 2]

The model is the default one (EfficientNet-Lite0 + BN-neck, 224x224): its torch network
(``model.exporter.default_embedder.build_default_net``) and its ONNX file. The images are the
query and gallery of a Market-layout set (``--data``; default: the sample
``model.data.market_sample`` writes, to a temporary directory). Three ways to embed them:

- ``torch eager``: ``torch_masked_embedder`` (DataLoader, ``eval_transform``, ``net.embed``),
  what the trainer's held-out evaluation and ``model.evaluate --checkpoint`` ran before;
- ``evaluation path``: ``network_masked_embedder`` on the CPU, what both run now: an in-memory
  ONNX export of the network (its time included) and ONNX Runtime;
- ``ONNX file``: ``onnx_masked_embedder``, ``model.evaluate --onnx`` (the service's path).

They take turns for ``--rounds`` rounds and each keeps its best: on a shared machine a
neighbour's burst lands in one round, not in one path. Printed per path: images/s (wall),
CPU-ms per image (this process's CPU time: much less sensitive to neighbours), and the ratio
of its time to the ONNX file's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.config.train_config import load_config
from model.data.market_sample import write_market_sample
from model.data.sample import Sample
from model.engine.registries import read_dataset
from model.evaluation.embed_split import onnx_masked_embedder, torch_masked_embedder
from model.evaluation.exported_network import network_masked_embedder
from model.exporter.default_embedder import DEFAULT_INPUT_SIZE, build_default_net

DEFAULT_ONNX = Path("models/default/embedder.onnx")


@dataclass
class PathTiming:
    name: str
    wall_s: float = float("inf")
    cpu_s: float = float("inf")
    embeddings: np.ndarray | None = None


def _run(run: Callable[[], tuple[np.ndarray, np.ndarray]], timing: PathTiming) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    emb, ok = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not ok.all():
        raise SystemExit(f"{timing.name}: {int((~ok).sum())} unreadable images")
    timing.wall_s, timing.cpu_s = min(timing.wall_s, wall), min(timing.cpu_s, cpu)
    timing.embeddings = emb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluation_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, help="Market-layout root (default: the sample)")
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="the default model file")
    parser.add_argument(
        "--images", type=int, default=0, help="first N query+gallery images (0: all)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="turns per path; best kept")
    parser.add_argument("--batch-size", type=int, default=128, help="torch eval batch size")
    parser.add_argument("--num-workers", type=int, default=0, help="torch DataLoader workers")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or write_market_sample(Path(tmp) / "market_sample")
        cfg = load_config(None, ["data.dataset=market1501", f"data.root={root}"])
        split = read_dataset(cfg.data)
        samples: list[Sample] = list(split.query) + list(split.gallery)
        if args.images > 0:
            samples = samples[: args.images]
        net = build_default_net()
        size = DEFAULT_INPUT_SIZE
        paths = {
            "torch eager": lambda: torch_masked_embedder(
                net, size, batch_size=args.batch_size, num_workers=args.num_workers
            )(samples),
            "evaluation path": lambda: network_masked_embedder(net, size, device="cpu")(samples),
            "ONNX file": lambda: onnx_masked_embedder(args.onnx)(samples),
        }
        timings = {name: PathTiming(name) for name in paths}
        print(
            f"{len(samples)} images from {root} ({split.name}); default model, input "
            f"{size[0]}x{size[1]}; {args.rounds} rounds, best kept",
            flush=True,
        )
        for r in range(args.rounds):
            for name, run in paths.items():
                _run(run, timings[name])
                print(f"  round {r + 1} {name}: {timings[name].wall_s:.1f} s best", flush=True)

    onnx = timings["ONNX file"]
    n = len(samples)
    print(f"{'path':<16}{'images/s':>10}{'CPU-ms/img':>12}{'x ONNX time':>13}{'max |diff|':>12}")
    for t in timings.values():
        assert t.embeddings is not None and onnx.embeddings is not None
        diff = float(np.abs(t.embeddings - onnx.embeddings).max())
        print(
            f"{t.name:<16}{n / t.wall_s:>10.1f}{1000 * t.cpu_s / n:>12.1f}"
            f"{t.wall_s / onnx.wall_s:>12.2f}x{diff:>12.2e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
