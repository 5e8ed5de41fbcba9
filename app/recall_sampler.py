"""Recall@10 of an approximate index, sampled on production searches, off the request path.

A fraction ``rate`` of searches hands its query and answer to a bounded queue (``offer``, on
the request path, never waits: a full queue drops the sample and counts it); one daemon thread
drains the queue, runs the exact search (``ExactSearchable.exact_search``: a scan of every
stored row) and exports ``|index's top 10 ∩ exact top 10| / |exact top 10|``, by item id as
``bench/approximate_index.py`` computes it.

Always recall@10, whatever the request's k: a search that asked for 10 or more gives its first
10 results; one that asked for fewer is searched again at k = 10 by the thread, so the figure
is the index's recall@10 on production queries, the one the bench reports. The exact search
runs a little after the served one: a write in between can turn a hit into a miss or back,
noise at any realistic sampling rate.

Only an index that is ``ExactSearchable`` is sampled (the IVF): the flat index is exact, and
Milvus's FLAT index is exact too, so neither gets a sampler (``recall_sampler_for``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.metrics import RECALL_RECENT_SAMPLES, ServiceMetrics
from index.centroid_index import CentroidIndex
from index.exact_searchable import ExactSearchable

log = logging.getLogger(__name__)

RECALL_K = 10
# Longest close() waits for the thread to finish the sample it is measuring.
CLOSE_TIMEOUT_S = 5.0


class SampledIndex(CentroidIndex, ExactSearchable, Protocol):
    """An approximate centroid index that can also search exactly."""


@dataclass(frozen=True)
class _Sample:
    query: npt.NDArray[np.float32]  # (1, D) unit-norm, as searched
    top: list[str] | None  # the search's first RECALL_K item ids; None: it asked fewer


class RecallSampler:
    """Samples ``rate`` (0 < rate <= 1) of the searches offered; at most ``queue_size`` wait."""

    def __init__(
        self,
        index: SampledIndex,
        metrics: ServiceMetrics,
        *,
        rate: float,
        queue_size: int,
        seed: int | None = None,
    ) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._index = index
        self._metrics = metrics
        self._rate = rate
        self._queue_size = queue_size
        self._random = random.Random(seed)
        self._cond = threading.Condition()
        self._pending: deque[_Sample] = deque()
        self._measuring = False
        self._closed = False
        self._recent: deque[float] = deque(maxlen=RECALL_RECENT_SAMPLES)
        self._thread = threading.Thread(target=self._run, name="recall-sampler", daemon=True)
        self._thread.start()

    def offer(self, query: npt.NDArray[np.float32], k: int, hits: list[tuple[str, float]]) -> None:
        """After a search of ``query`` ``(1, D)`` (kept, not copied: not to be modified) for
        ``k`` that returned ``hits`` (before any min_score cut): maybe queue it. Never waits."""
        if not hits or self._random.random() >= self._rate:
            return  # an empty index has no recall to measure
        top = [item_id for item_id, _ in hits[:RECALL_K]] if k >= RECALL_K else None
        with self._cond:
            if self._closed:
                return
            queued = len(self._pending) < self._queue_size
            if queued:
                self._pending.append(_Sample(query, top))
                self._cond.notify()
        if not queued:
            self._metrics.recall_samples.labels(outcome="dropped").inc()

    @property
    def running(self) -> bool:
        """True until ``close`` has stopped the thread."""
        return self._thread.is_alive()

    def wait_idle(self, timeout: float) -> bool:
        """Until every queued sample is measured; False if ``timeout`` s passed first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and not self._measuring, timeout=timeout
            )

    def close(self) -> None:
        """Stop the thread; samples still queued are dropped uncounted."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join(CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closed)
                if self._closed:
                    return
                sample = self._pending.popleft()
                self._measuring = True
            try:
                self._measure(sample)
            except Exception as exc:  # a failed sample must not end the sampling
                log.warning("recall sample failed: %s: %s", type(exc).__name__, exc)
                self._metrics.recall_samples.labels(outcome="failed").inc()
            finally:
                with self._cond:
                    self._measuring = False
                    self._cond.notify_all()

    def _measure(self, sample: _Sample) -> None:
        top = sample.top
        if top is None:
            top = [item_id for item_id, _ in self._index.search(sample.query, RECALL_K)[0]]
        exact = {item_id for item_id, _ in self._index.exact_search(sample.query, RECALL_K)[0]}
        if not exact:
            return  # emptied since the search: nothing to compare with
        recall = len(exact.intersection(top)) / len(exact)
        self._metrics.recall_at_10.observe(recall)
        self._metrics.recall_samples.labels(outcome="measured").inc()
        self._recent.append(recall)
        self._metrics.recall_at_10_recent.set(sum(self._recent) / len(self._recent))


def recall_sampler_for(
    index: CentroidIndex, metrics: ServiceMetrics, *, rate: float, queue_size: int
) -> RecallSampler | None:
    """A sampler when ``index`` is approximate (``ExactSearchable``) and ``rate`` > 0."""
    if rate == 0 or not isinstance(index, ExactSearchable):
        return None
    return RecallSampler(index, metrics, rate=rate, queue_size=queue_size)
