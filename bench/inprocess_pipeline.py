"""The service's work without the service: decode the same JPEGs the same way, in worker
threads, while one thread runs ONNX Runtime on full batches. Its rate is what the service
could reach if HTTP, multipart parsing, queueing and the index cost nothing, so the service's
rate over it is the serving overhead alone."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from bench.raw_ort import timed_calls


@dataclass(frozen=True)
class PipelineThroughput:
    batch_size: int
    decode_threads: int
    batches: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.batch_size * self.batches / self.seconds


def measure_pipeline(
    embedder: OnnxEmbedder,
    bodies: Sequence[bytes],
    *,
    batch_size: int,
    decode_threads: int,
    seconds: float,
    max_pixels: int,
    min_batches: int = 3,
) -> PipelineThroughput:
    """Images per second through decode (``preprocess_bytes``, as the service calls it, with
    its pixel limit) and ``embed`` at ``batch_size``, decoding overlapped with inference.

    ``bodies`` are cycled. Two batches of decodes are kept queued ahead of the model, so
    inference never waits for a decode unless decoding is the slower side. One untimed batch
    first (thread start-up, ORT arena).
    """
    if batch_size < 1 or decode_threads < 1:
        raise ValueError(
            f"need batch_size and decode_threads >= 1, got {batch_size}, {decode_threads}"
        )
    spec = embedder.spec
    source = itertools.cycle(bodies)
    with ThreadPoolExecutor(decode_threads, thread_name_prefix="bench-decode") as pool:
        queued: deque[Future[npt.NDArray[np.uint8]]] = deque()

        def top_up() -> None:
            while len(queued) < 2 * batch_size:
                queued.append(
                    pool.submit(preprocess_bytes, next(source), spec, max_pixels=max_pixels)
                )

        def one_batch() -> None:
            top_up()
            arrays = [queued.popleft().result() for _ in range(batch_size)]
            top_up()  # the next decodes run while this batch is inferred
            embedder.embed(stack_batch(arrays))

        one_batch()
        batches, elapsed = timed_calls(one_batch, seconds=seconds, min_calls=min_batches)
        for future in queued:
            future.cancel()
    return PipelineThroughput(batch_size, decode_threads, batches, elapsed)
