"""Raw ONNX Runtime throughput per batch size, on a given embedder (so with the service's own
session options): the ceiling the service's search and enrollment rates are compared to, and
the core time a batch costs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from artifact.onnx_embedder import OnnxEmbedder
from bench.ort_throughput import BATCH_SIZES, BatchThroughput


@dataclass(frozen=True)
class MeasuredBatch(BatchThroughput):
    """``cpu_s``: this process's CPU time over the ``seconds`` (every ORT thread's), so the
    core time of a batch even when a neighbour took cores meanwhile."""

    cpu_s: float

    @property
    def core_ms_per_image(self) -> float:
        return 1000 * self.cpu_s / (self.batch_size * self.calls)


def timed_calls(call: Callable[[], object], *, seconds: float, min_calls: int) -> tuple[int, float]:
    """Call ``call`` until ``seconds`` have passed and it ran ``min_calls`` times; return
    ``(calls, elapsed seconds)``. Warm-up is the caller's business."""
    calls, start = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return calls, elapsed


def measure_raw_ort(
    embedder: OnnxEmbedder,
    arrays: Sequence[npt.NDArray[np.uint8]],
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seconds_per_size: float,
    min_calls: int = 3,
) -> list[MeasuredBatch]:
    """Images per second of ``embedder.embed`` alone at each batch size, one thread calling.

    ``arrays``: preprocessed ``(3, H, W)`` uint8 images, cycled to fill the batches, so only
    the model runs in the timed loop. One untimed warm-up call per size (ORT sizes its arena
    per shape). ``embedder.max_batch`` must be at least the largest size, or it would split
    the batch. The process should run nothing else meanwhile (its CPU time is the model's).
    """
    if embedder.max_batch < max(batch_sizes):
        raise ValueError(f"embedder splits batches above {embedder.max_batch}")
    out = []
    for size in batch_sizes:
        # (size, 3, H, W) uint8, contiguous as the service's stack_batch makes it.
        batch = np.ascontiguousarray(np.stack([arrays[i % len(arrays)] for i in range(size)]))
        embedder.embed(batch)
        cpu0 = time.process_time()
        calls, elapsed = timed_calls(
            partial(embedder.embed, batch), seconds=seconds_per_size, min_calls=min_calls
        )
        out.append(MeasuredBatch(size, calls, elapsed, time.process_time() - cpu0))
    return out
