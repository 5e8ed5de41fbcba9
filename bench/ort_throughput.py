"""Raw ONNX Runtime embedding throughput: the ceiling the service's search rate is compared to."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class BatchThroughput:
    batch_size: int
    calls: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.batch_size * self.calls / self.seconds


def measure_ort_throughput(
    model_path: Path,
    photos: Sequence[bytes],
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds_per_size: float = 3.0,
    min_calls: int = 3,
) -> list[BatchThroughput]:
    """Images per second of ``embed`` alone at each batch size, one thread calling.

    The photos are decoded and resized once beforehand, so only the model runs in the timed
    loop (ONNX Runtime's own intra-op threads: its default, one per core, as the service's).
    Each size gets one untimed warm-up call, then calls until ``seconds_per_size`` and
    ``min_calls`` are both reached.
    """
    embedder = OnnxEmbedder(model_path, max_batch=max(batch_sizes))
    arrays = [preprocess_bytes(p, embedder.spec) for p in photos]
    out = []
    for size in batch_sizes:
        # Cycle the photos to fill large batches: (size, 3, H, W) uint8.
        batch = np.ascontiguousarray(np.stack([arrays[i % len(arrays)] for i in range(size)]))
        embedder.embed(batch)
        calls, start = 0, time.perf_counter()
        while True:
            embedder.embed(batch)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds_per_size and calls >= min_calls:
                break
        out.append(BatchThroughput(size, calls, elapsed))
    return out
