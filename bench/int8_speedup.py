"""What an INT8 export buys and costs, side by side in one run::

    python -m bench.int8_speedup --fp32 models/default/embedder.onnx \\
        --int8 models/default/embedder-int8.onnx [--seconds 3] [--rounds 2] [--folder ROOT]

- **Speed**: raw ONNX Runtime images/s of both models at every ``--batch-sizes`` on the same
  preprocessed real photos (``bench.loadtest.photo_set``, decoded once), with
  ``bench.ort_throughput``'s loop and ORT's default threads (one per core, as the service).
  The two models take turns at each size, for ``--rounds`` rounds, and each keeps its best
  round: on a shared machine a neighbour's burst then lands in one round, not in one model.
  Printed: both rates and their ratio at every size, at batch 1, and at each model's best size.
- **Core time**: milliseconds of CPU per image with one ORT thread (no pool: the calling
  thread computes, so its CPU time is the work), at the first and the largest batch size. A
  neighbour's load slows wall-clock rates by any amount but leaves this nearly untouched, so on
  a shared machine it is the figure to trust for the ratio; on N idle cores, throughput at
  saturation is about N × 1000 / core-ms.
- **Agreement**: mean and minimum cosine of the INT8 embeddings (as one batch and one by one)
  to the FP32 model's, on the same photos' bytes through the service's pixel path.
- **Retrieval**: centroid Recall@1 of both on a labelled folder (``--folder``, else the
  shipped-photo folder of the INT8 gate, written to a temporary directory) and the change.

The two files must be one model's twins: the same contract apart from version and date.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from bench.loadtest.photo_set import build_photo_set
from bench.ort_throughput import BATCH_SIZES, measure_ort_throughput
from model.data.folder_items import read_folder_items
from model.exporter.embedding_agreement import Agreement
from model.exporter.int8_parity_gate import (
    FolderRecall,
    folder_recall,
    photo_agreement,
    shipped_photo_split,
)

# Fields a quantised twin may differ in; everything else says how pixels reach the graph.
TWIN_FIELDS = ("model_version", "export_date")


@dataclass(frozen=True)
class SizeRates:
    """Best-round images/s of both models at one batch size."""

    batch_size: int
    fp32: float
    int8: float

    @property
    def speedup(self) -> float:
        return self.int8 / self.fp32


@dataclass(frozen=True)
class SizeCoreTime:
    """Best-round CPU milliseconds per image of both models on one ORT thread."""

    batch_size: int
    fp32_ms: float
    int8_ms: float

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms


@dataclass(frozen=True)
class Int8Speedup:
    rates: list[SizeRates]
    core: list[SizeCoreTime]
    photos: Agreement
    fp32_recall: FolderRecall
    int8_recall: FolderRecall

    def at(self, batch_size: int) -> SizeRates:
        return next(r for r in self.rates if r.batch_size == batch_size)

    @property
    def best_fp32(self) -> SizeRates:
        return max(self.rates, key=lambda r: r.fp32)

    @property
    def best_int8(self) -> SizeRates:
        return max(self.rates, key=lambda r: r.int8)

    @property
    def best_speedup(self) -> float:
        """INT8 at its best batch size over FP32 at its own best."""
        return self.best_int8.int8 / self.best_fp32.fp32

    @property
    def recall_change(self) -> float:
        return self.int8_recall.recall_at_1 - self.fp32_recall.recall_at_1


def check_twins(fp32: PreprocessSpec, int8: PreprocessSpec) -> None:
    """Raise ``ValueError`` unless the contracts differ at most in :data:`TWIN_FIELDS`."""
    a, b = fp32.to_dict(), int8.to_dict()
    differ = sorted(k for k in a.keys() | b.keys() if k not in TWIN_FIELDS and a.get(k) != b.get(k))
    if differ:
        raise ValueError(f"the two models are not twins: their contracts differ in {differ}")


MODELS = ("fp32", "int8")


def taking_turns(
    batch_sizes: Sequence[int],
    rounds: int,
    measure: Callable[[str, int], float],
    best: Callable[[float, float], float],
) -> dict[tuple[str, int], float]:
    """``measure(model, size)`` for every round, size and model in turn; the ``best`` of each
    (model, size) over the rounds."""
    out: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for size in batch_sizes:
            for name in MODELS:
                value = measure(name, size)
                out[name, size] = best(out[name, size], value) if (name, size) in out else value
    return out


def measure_rates(
    paths: dict[str, Path],
    photos: Sequence[bytes],
    batch_sizes: Sequence[int],
    seconds: float,
    rounds: int,
) -> list[SizeRates]:
    def images_per_s(name: str, size: int) -> float:
        (result,) = measure_ort_throughput(
            paths[name], photos, batch_sizes=(size,), seconds_per_size=seconds
        )
        return result.images_per_s

    got = taking_turns(batch_sizes, rounds, images_per_s, max)
    return [SizeRates(s, got["fp32", s], got["int8", s]) for s in batch_sizes]


def core_ms_per_image(
    embedder: OnnxEmbedder, batch: npt.NDArray[np.uint8], seconds: float
) -> float:
    """CPU ms per image of ``embed(batch)`` ``(N, 3, H, W)`` uint8 on the calling thread,
    after one untimed call, over calls until ``seconds`` of that thread's CPU time."""
    embedder.embed(batch)
    calls, start = 0, time.thread_time()
    while (used := time.thread_time() - start) < seconds or calls == 0:
        embedder.embed(batch)
        calls += 1
    return 1000 * used / (calls * int(batch.shape[0]))


def measure_core_times(
    paths: dict[str, Path],
    photos: Sequence[bytes],
    batch_sizes: Sequence[int],
    seconds: float,
    rounds: int,
) -> list[SizeCoreTime]:
    embedders = {
        name: OnnxEmbedder(path, allow_gpu=False, intra_op_threads=1, max_batch=max(batch_sizes))
        for name, path in paths.items()
    }
    arrays = [preprocess_bytes(p, embedders["fp32"].spec) for p in photos]
    batches = {s: stack_batch([arrays[i % len(arrays)] for i in range(s)]) for s in batch_sizes}

    def ms(name: str, size: int) -> float:
        return core_ms_per_image(embedders[name], batches[size], seconds)

    got = taking_turns(batch_sizes, rounds, ms, min)
    return [SizeCoreTime(s, got["fp32", s], got["int8", s]) for s in batch_sizes]


def run(
    fp32_path: Path,
    int8_path: Path,
    *,
    folder: Path | None,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds: float = 3.0,
    rounds: int = 2,
) -> Int8Speedup:
    check_twins(
        OnnxEmbedder(fp32_path, allow_gpu=False).spec, OnnxEmbedder(int8_path, allow_gpu=False).spec
    )
    photos = build_photo_set().all_views()
    paths = {"fp32": fp32_path, "int8": int8_path}
    rates = measure_rates(paths, photos, batch_sizes, seconds, rounds)
    core_sizes = sorted({batch_sizes[0], max(batch_sizes)})
    core = measure_core_times(paths, photos, core_sizes, seconds, rounds)
    agreement = photo_agreement(fp32_path, int8_path, photos)
    with tempfile.TemporaryDirectory(prefix="int8-speedup-") as scratch:
        split = (
            read_folder_items(folder, name=str(folder))
            if folder is not None
            else shipped_photo_split(Path(scratch))
        )
        recalls = folder_recall(fp32_path, split), folder_recall(int8_path, split)
    return Int8Speedup(rates, core, agreement, *recalls)


def print_report(result: Int8Speedup) -> None:
    print(
        f"ORT images/s on {result.photos.num_photos} real photos, best of the rounds "
        "(ORT default threads)"
    )
    print(f"{'batch':>5}  {'FP32':>9}  {'INT8':>9}  {'speed-up':>8}")
    for r in result.rates:
        print(f"{r.batch_size:>5}  {r.fp32:>9.1f}  {r.int8:>9.1f}  {r.speedup:>7.2f}x")
    one = result.rates[0]
    print(
        f"batch {one.batch_size}: FP32 {one.fp32:.1f}, INT8 {one.int8:.1f} images/s, "
        f"speed-up {one.speedup:.2f}x"
    )
    fp32, int8 = result.best_fp32, result.best_int8
    print(
        f"best batch: FP32 {fp32.fp32:.1f} (batch {fp32.batch_size}), INT8 {int8.int8:.1f} "
        f"(batch {int8.batch_size}) images/s, speed-up {result.best_speedup:.2f}x"
    )
    print("CPU ms per image on one ORT thread (thread CPU time), best of the rounds")
    for c in result.core:
        print(
            f"batch {c.batch_size}: FP32 {c.fp32_ms:.3g}, INT8 {c.int8_ms:.3g} core-ms/image, "
            f"speed-up {c.speedup:.2f}x"
        )
    print(f"INT8 vs FP32 {result.photos} (batched and one by one)")
    a, b = result.fp32_recall, result.int8_recall
    print(
        f"centroid Recall@1 on {a.num_queries} queries / {a.num_items} items: FP32 "
        f"{a.recall_at_1:.4f}, INT8 {b.recall_at_1:.4f}, change {result.recall_change:+.4f}"
    )


def report_json(result: Int8Speedup) -> str:
    out = {
        "rates": [asdict(r) | {"speedup": r.speedup} for r in result.rates],
        "best_fp32": asdict(result.best_fp32),
        "best_int8": asdict(result.best_int8),
        "best_speedup": result.best_speedup,
        "core_ms": [asdict(c) | {"speedup": c.speedup} for c in result.core],
        "cosine": asdict(result.photos),
        "recall_at_1": {"fp32": asdict(result.fp32_recall), "int8": asdict(result.int8_recall)},
        "recall_change": result.recall_change,
    }
    return json.dumps(out, indent=2)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.int8_speedup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fp32", type=Path, required=True, help="the FP32 model (.onnx)")
    parser.add_argument("--int8", type=Path, required=True, help="its INT8 twin (.onnx)")
    sizes = list(BATCH_SIZES)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=sizes, help=f"default {sizes}; the first "
        "is also reported alone"
    )  # fmt: skip
    parser.add_argument(
        "--seconds", type=_positive, default=3.0, help="timed seconds per model, size and round"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of turns (default 2)")
    parser.add_argument(
        "--folder", type=Path, default=None, help="labelled folder for Recall@1 (default: the "
        "shipped-photo folder)"
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or min(args.batch_sizes) < 1:
        parser.error("--rounds and --batch-sizes must be >= 1")
    try:
        result = run(
            args.fp32,
            args.int8,
            folder=args.folder,
            batch_sizes=args.batch_sizes,
            seconds=args.seconds,
            rounds=args.rounds,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(report_json(result))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
