"""The store's own lane: store I/O runs on a bounded set of threads apart from the worker threads.

Decoding, index searches and the service's other work run on the worker threads
(``RETRIEVAL_WORKER_THREADS``). Calls that go to the store — enrollments' commits, item reads and
listings, deletions, readiness and ``/info`` — run here instead, at most ``slots`` at once, with
at most ``queue`` more waiting for a slot; past that a request is answered 503 at once. So a
slow or stalled store ties up this lane's threads and nothing else: searches, which need no
store, keep their threads and keep being answered, and writes piling up against a dead store
fail fast instead of queueing without bound.

Counted on the event loop only (``run`` is awaited there), so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

from app.metrics import ServiceMetrics
from app.retriever_errors import QueueFullError

P = ParamSpec("P")
T = TypeVar("T")


class StoreBusyError(QueueFullError):
    """Every store slot is taken and the lane's queue is full: 503 at once, retry later."""


class StoreLane:
    def __init__(self, slots: int, queue: int, metrics: ServiceMetrics) -> None:
        if slots < 1 or queue < 0:
            raise ValueError(f"need slots >= 1 and queue >= 0, got {slots}, {queue}")
        self.slots = slots
        self.queue = queue
        self._limiter = anyio.CapacityLimiter(slots)
        self._in_lane = 0  # running or waiting for a slot
        self._metrics = metrics

    @property
    def in_lane(self) -> int:
        return self._in_lane

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on one of the lane's threads; ``StoreBusyError`` if the
        lane already holds ``slots + queue`` calls."""
        if self._in_lane >= self.slots + self.queue:
            self._metrics.store_lane_rejections.inc()
            raise StoreBusyError(
                f"the store is busy ({self._in_lane} store operations running or waiting); "
                "retry later"
            )
        self._in_lane += 1
        self._metrics.store_lane_requests.set(self._in_lane)
        try:
            return await anyio.to_thread.run_sync(
                partial(fn, *args, **kwargs), limiter=self._limiter
            )
        finally:
            self._in_lane -= 1
            self._metrics.store_lane_requests.set(self._in_lane)
