"""Prometheus metrics of one service instance (its own registry, so tests can build many apps)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.errors import StoreError

# Stage names are part of the metrics contract (the benchmark reads them).
# Longest a scrape waits for the store's item and image counts.
STORE_COUNTS_WAIT_S = 0.5
STAGES = (
    "decode",
    "inference",
    "index_search",
    "rerank",  # the second stage: candidates' images (from memory or the store), verdicts
    "index_update",
    "store_write",
    "blob_write",
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Queue waits are often well under a millisecond: finer at the low end.
_WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, *_LATENCY_BUCKETS)
# Images per executed batch; le=1 is what "was it batched at all" reads.
_BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256)
# Why a request was turned away or dropped before inference (the label values are a contract).
REJECTION_REASONS = ("queue_full", "queue_timeout", "client_gone")
# Why the server closed a client's connection (label values are a contract too).
CONNECTION_CLOSE_REASONS = ("header_timeout", "body_timeout", "over_connection_cap")
# How an index entry that disagreed with the store was found (label values are a contract).
RECONCILE_SOURCES = ("pending", "periodic")
# What became of a search sampled for recall (label values are a contract).
RECALL_SAMPLE_OUTCOMES = ("measured", "dropped", "failed")
# Sampled recall@10 is a multiple of 0.1 when the index holds 10 items or more.
_RECALL_BUCKETS = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
# Measured samples the recent-recall gauge averages.
RECALL_RECENT_SAMPLES = 100


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route template.",
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "retrieval_stage_seconds",
            "Time spent per processing stage.",
            ("stage",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.index_items = Gauge(
            "retrieval_index_items", "Items (centroids) in the index.", registry=self.registry
        )
        self.batch_size = Histogram(
            "retrieval_batch_size",
            "Images per executed inference batch.",
            buckets=_BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_queue_wait_seconds = Histogram(
            "retrieval_batch_queue_wait_seconds",
            "Per request: from its submission to the executor until its first batch ran.",
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.batch_inference_seconds = Histogram(
            "retrieval_batch_inference_seconds",
            "Per batch: time of its one model call.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_pending = Gauge(
            "retrieval_inference_pending",
            "Requests waiting for the inference executor (not yet in a running batch).",
            registry=self.registry,
        )
        self.admission_queue_length = Gauge(
            "retrieval_admission_queue_length",
            "Requests admitted and not yet through inference.",
            registry=self.registry,
        )
        self.admission_rejections = Counter(
            "retrieval_admission_rejections",
            "Requests turned away (queue full) or dropped before inference, by reason.",
            ("reason",),
            registry=self.registry,
        )
        for reason in REJECTION_REASONS:
            self.admission_rejections.labels(reason=reason)
        self.bytes_in_flight = Gauge(
            "retrieval_bytes_in_flight",
            "Request body bytes reserved by requests being received or processed.",
            registry=self.registry,
        )
        self.bytes_in_flight_rejections = Counter(
            "retrieval_bytes_in_flight_rejections",
            "Requests turned away (503) because the bytes-in-flight budget stayed full.",
            registry=self.registry,
        )
        self.store_lane_requests = Gauge(
            "retrieval_store_lane_requests",
            "Store operations running on the store's own threads or waiting for one.",
            registry=self.registry,
        )
        self.store_deadline_exceeded = Counter(
            "retrieval_store_deadline_exceeded",
            "Store operations answered 503 because the store did not answer within the deadline.",
            registry=self.registry,
        )
        self.store_lane_rejections = Counter(
            "retrieval_store_lane_rejections",
            "Requests turned away (503) because every store slot and its queue were taken.",
            registry=self.registry,
        )
        self.store_breaker_state = Gauge(
            "retrieval_store_breaker_state",
            "The store lane's circuit breaker: 0 closed, 1 half-open (one probe let through), "
            "2 open (store operations refused without trying the store).",
            registry=self.registry,
        )
        self.store_breaker_refusals = Counter(
            "retrieval_store_breaker_refusals",
            "Requests turned away (503) by the open store circuit breaker, the store not tried.",
            registry=self.registry,
        )
        self.open_connections = Gauge(
            "retrieval_open_connections",
            "Client connections open (the cap is max_connections).",
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "retrieval_connections_closed",
            "Connections the server closed on a client, by reason.",
            ("reason",),
            registry=self.registry,
        )
        for reason in CONNECTION_CLOSE_REASONS:
            self.connections_closed.labels(reason=reason)
        self.reconcile_pending = Gauge(
            "retrieval_reconcile_pending",
            "Items whose last write had an unknown outcome, not yet re-read from the store.",
            registry=self.registry,
        )
        self.reconciled_items = Counter(
            "retrieval_reconciled_items",
            "Items whose index entry was corrected from the store, by how they were found "
            "(pending: after an unknown write outcome; periodic: by the full comparison).",
            ("source",),
            registry=self.registry,
        )
        for source in RECONCILE_SOURCES:
            self.reconciled_items.labels(source=source)
        self.replication_lag_records = Gauge(
            "retrieval_replication_lag_records",
            "Change records of the store's feed this replica has not applied yet (Redis).",
            registry=self.registry,
        )
        self.replication_lag_seconds = Gauge(
            "retrieval_replication_lag_seconds",
            "How much older the last applied change record is than the feed's newest (Redis).",
            registry=self.registry,
        )
        self.replication_delay = Histogram(
            "retrieval_replication_delay_seconds",
            "From a write's commit (its change record's time, the Redis server's clock) to "
            "this replica applying it; records this replica had applied already count too.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=self.registry,
        )
        self.changes_applied = Counter(
            "retrieval_changes_applied",
            "Change records read from the feed, by outcome (applied; skipped: the index "
            "already reflected that state or a newer one; noted: a shared index, which the "
            "writing replica updated, so only the version is noted).",
            ("outcome",),
            registry=self.registry,
        )
        for outcome in ("applied", "skipped", "noted"):
            self.changes_applied.labels(outcome=outcome)
        self.index_rebuilds = Counter(
            "retrieval_index_rebuilds",
            "Full rebuilds of the index from the store after start-up (the feed was trimmed "
            "past this replica's position).",
            registry=self.registry,
        )
        self.recall_at_10 = Histogram(
            "retrieval_index_recall_at_10",
            "Sampled searches on an approximate index: the share of the exact top 10 (a scan "
            "of every row, off the request path) that the index's top 10 holds.",
            buckets=_RECALL_BUCKETS,
            registry=self.registry,
        )
        self.recall_samples = Counter(
            "retrieval_recall_samples",
            "Searches sampled for recall, by outcome (measured; dropped: the recall queue was "
            "full; failed: the exact search raised).",
            ("outcome",),
            registry=self.registry,
        )
        for outcome in RECALL_SAMPLE_OUTCOMES:
            self.recall_samples.labels(outcome=outcome)
        self.recall_at_10_recent = Gauge(
            "retrieval_index_recall_at_10_recent",
            f"Mean recall@10 of the last {RECALL_RECENT_SAMPLES} measured samples (NaN before "
            "the first, and with an exact index, which is not sampled).",
            registry=self.registry,
        )
        self.recall_at_10_recent.set(float("nan"))
        self.index_snapshot_seconds = Histogram(
            "retrieval_index_snapshot_seconds",
            "Time to write one index snapshot (app/index_snapshots.py).",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=self.registry,
        )
        self.index_snapshot_items = Gauge(
            "retrieval_index_snapshot_items",
            "Items in the last index snapshot written.",
            registry=self.registry,
        )
        self.index_snapshot_failures = Counter(
            "retrieval_index_snapshot_failures",
            "Index snapshots that failed to be written (logged; retried after the interval).",
            registry=self.registry,
        )
        self.index_startup_seconds = Gauge(
            "retrieval_index_startup_seconds",
            "How long this process took to bring its index in step with the store at start-up, "
            "by how: snapshot (loaded, then the writes after it replayed) or rebuild (every "
            "item read from the store).",
            ("how",),
            registry=self.registry,
        )
        # Set when GET /quality computes (app/gallery_quality.py); NaN before the first.
        self.gallery_loo_recall_at_1 = Gauge(
            "retrieval_gallery_loo_recall_at_1",
            "Leave-one-image-out R@1 of the gallery's sampled images (each searched against "
            "every centroid, its own item's formed without it).",
            registry=self.registry,
        )
        self.gallery_loo_mrr = Gauge(
            "retrieval_gallery_loo_mrr",
            "Leave-one-image-out mean reciprocal rank of the gallery's sampled images.",
            registry=self.registry,
        )
        self.gallery_loo_sample_images = Gauge(
            "retrieval_gallery_loo_sample_images",
            "Images queried by the last leave-one-image-out evaluation.",
            registry=self.registry,
        )
        for gauge in (self.gallery_loo_recall_at_1, self.gallery_loo_mrr):
            gauge.set(float("nan"))
        self._store_counts: Callable[[], tuple[int, int]] | None = None
        self.registry.register(_StoreCountsCollector(self))
        for stage in STAGES:  # export zero-valued series from the start
            self.stage_seconds.labels(stage=stage)

    def read_store_counts_from(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Export ``counts() -> (items, images)`` of the store as gauges, read at scrape time."""
        self._store_counts = counts

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(seconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(name, time.perf_counter() - start)


class _StoreCountsCollector(Collector):
    """``retrieval_store_items`` / ``retrieval_store_images``, asked of the store per scrape.

    Read when scraped rather than kept in step by the write path: the figures are then exact
    whoever wrote them (this process or another replica on the same Redis), and writes pay
    nothing for them. Both backends count cheaply (Redis keeps counters; SQLite counts rows).
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        # A scrape must not wait on a stalled store: the counts are asked on a thread of their
        # own and given up on after STORE_COUNTS_WAIT_S; while an earlier ask is still stuck,
        # no other is piled on.
        self._asker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-counts")
        self._asked: Future[tuple[int, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        counts = self._metrics._store_counts
        if counts is None:
            return
        if self._asked is None or self._asked.done():
            self._asked = self._asker.submit(counts)
        try:
            items, images = self._asked.result(timeout=STORE_COUNTS_WAIT_S)
        except (StoreError, TimeoutError):
            # Unreachable or stalled store: leave the series out rather than report a stale
            # figure; /readyz says why.
            return
        yield GaugeMetricFamily("retrieval_store_items", "Items in the store.", value=items)
        yield GaugeMetricFamily("retrieval_store_images", "Images in the store.", value=images)


class RequestMetricsMiddleware:
    """Counts and times requests by route *template* (``/items/{item_id}``), not raw path.

    Meant to be the outermost middleware, so that it records the status the client actually
    got, including answers that inner middleware gives before the router runs (e.g. a 413 for
    a declared body length). ``routes`` lets it name the route of such requests too.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: ServiceMetrics, routes: Sequence[BaseRoute] = ()
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = self._template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.request_seconds.labels(method, template).observe(
                time.perf_counter() - start
            )

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            # The router never ran: match the routes here as it would have (the first full
            # match, else the first partial one, i.e. the right path with another method).
            partial = None
            for candidate in self.routes:
                if not isinstance(getattr(candidate, "path", None), str):
                    continue
                match = candidate.matches(scope)[0]
                if match == Match.FULL:
                    route = candidate
                    break
                if match == Match.PARTIAL and partial is None:
                    partial = candidate
            route = route or partial
        template = getattr(route, "path", None)
        return template if isinstance(template, str) else "unmatched"
