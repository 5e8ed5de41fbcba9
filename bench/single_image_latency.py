"""One image at a time, in process: decode (as the service does) then a batch-1 inference.
Their sum is what one search could take if HTTP, queueing and the index cost nothing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from bench.loadtest.latency_stats import nearest_rank_percentile


@dataclass(frozen=True)
class SingleImageLatency:
    """Per image, in milliseconds; p50 by nearest rank over ``images`` images.
    ``decode_cpu_p50_ms``: the decoding thread's CPU time (decoding is single-threaded), its
    core cost even when a neighbour took the core meanwhile."""

    images: int
    decode_p50_ms: float
    inference_p50_ms: float
    total_p50_ms: float
    decode_cpu_p50_ms: float


def measure_single_image(
    embedder: OnnxEmbedder,
    bodies: Sequence[bytes],
    *,
    seconds: float,
    max_pixels: int,
    min_images: int = 5,
) -> SingleImageLatency:
    """Decode and embed ``bodies`` (cycled) one by one for ``seconds``, timing each step.

    ``total`` is per image (decode + inference of the same image), so its p50 is the p50 of
    the sum, not the sum of the p50s. One untimed image first.
    """
    spec = embedder.spec
    embedder.embed(preprocess_bytes(bodies[0], spec, max_pixels=max_pixels)[None])
    decode_ms: list[float] = []
    decode_cpu_ms: list[float] = []
    inference_ms: list[float] = []
    end = time.perf_counter() + seconds
    for body in itertools.cycle(bodies):
        t0, c0 = time.perf_counter(), time.thread_time()
        array = preprocess_bytes(body, spec, max_pixels=max_pixels)
        t1 = time.perf_counter()
        decode_cpu_ms.append(1000 * (time.thread_time() - c0))
        embedder.embed(array[None])  # (1, 3, H, W)
        t2 = time.perf_counter()
        decode_ms.append(1000 * (t1 - t0))
        inference_ms.append(1000 * (t2 - t1))
        if t2 >= end and len(decode_ms) >= min_images:
            break
    totals = [d + i for d, i in zip(decode_ms, inference_ms, strict=True)]
    return SingleImageLatency(
        images=len(totals),
        decode_p50_ms=nearest_rank_percentile(decode_ms, 50),
        inference_p50_ms=nearest_rank_percentile(inference_ms, 50),
        total_p50_ms=nearest_rank_percentile(totals, 50),
        decode_cpu_p50_ms=nearest_rank_percentile(decode_cpu_ms, 50),
    )
