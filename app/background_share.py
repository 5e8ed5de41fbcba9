"""A migration's re-embedding in a serving process, held to a share of the cores.

``embed`` turns originals into embeddings on the target model: through its executor at
background priority (which yields to every search and enrollment and spaces its batches,
``app/inference_executor.py``), or, without one, by pausing after each call for
``(1 / share - 1)`` times what the call took.

The job's own work takes the cores (and the interpreter) from the searches as well: the
decoding in ``embed``, and whatever the job did since the previous call or pause (reading an
item and its originals, writing the shadow, checking an item found in step, which costs no
model call at all) are paced the same way, by a pause of ``(1 / share - 1)`` times their
duration: ``embed`` pauses for what came before it, ``pace`` (called by the job after each
item) for what came after. Without it, a fast model leaves the job running flat out on
everything but the model: with the tiny test model on 10^4 images, searches' p50 went from 12
to 80 ms and p99 from 133 ms to 1 s while it ran; and a catch-up pass over items all in step
ran flat out on reads alone.

While two models are loaded (a migration inside the serving process), each pause also lasts
until the serving model's executor is idle (``InferenceExecutor.foreground_busy``: no search or
enrollment queued, being decoded or in a model call). The job's next stretch of Python work
then starts in a gap between requests rather than beside one: in one interpreter the two take
turns at the GIL, so a request that runs beside the job's work is slowed by it whatever its
share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.inference_executor import YIELD_POLL_S, Priority
from app.reembed_job import UnreadableImagesError, decode_failures
from app.retriever import Retriever
from artifact.image_decode import preprocess_bytes, stack_batch


class BackgroundShare:
    def __init__(self, retriever: Retriever, share: float) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.retriever = retriever
        self.share = share
        self._since: float | None = None  # when the last call or pause returned

    def embed(self, originals: Sequence[bytes]) -> npt.NDArray[np.float32]:
        """Originals → ``(N, D)`` float32 embeddings of the retriever's model;
        ``UnreadableImagesError`` naming those that do not decode."""
        retriever = self.retriever
        start = time.perf_counter()
        job_s = 0.0 if self._since is None else start - self._since
        arrays, failures = decode_failures(
            originals,
            lambda data: preprocess_bytes(
                data, retriever.embedder.spec, max_pixels=retriever.max_image_pixels
            ),
        )
        if failures:
            raise UnreadableImagesError(failures)
        batch = stack_batch(arrays)
        job_s += time.perf_counter() - start
        executor = retriever.executor
        if executor is not None:
            out = executor.submit(batch, priority=Priority.BACKGROUND).result()
        else:
            model_start = time.perf_counter()
            out = retriever.embedder.embed(batch)
            job_s += time.perf_counter() - model_start
        self._pause(job_s)
        return out

    def pace(self) -> None:
        """Pause for the job's work since the last call or pause."""
        now = time.perf_counter()
        self._pause(0.0 if self._since is None else now - self._since)

    def _pause(self, spent_s: float) -> None:
        time.sleep(spent_s * (1 / self.share - 1))
        executor = self.retriever.executor
        serving = executor.yield_to if executor is not None else None
        while serving is not None and serving.foreground_busy:
            time.sleep(YIELD_POLL_S)
        self._since = time.perf_counter()
