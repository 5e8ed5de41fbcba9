"""The batcher's metrics over a window, read from real Prometheus exposition text of the metric
names issue 10 fixes, against the observations made between the two scrapes."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bench.batch_metrics import batch_window


def _registry() -> tuple[CollectorRegistry, Histogram, Histogram, Histogram, Counter]:
    registry = CollectorRegistry()
    size = Histogram("retrieval_batch_size", "", buckets=(1, 2, 4, 8), registry=registry)
    wait = Histogram("retrieval_batch_queue_wait_seconds", "", registry=registry)
    inference = Histogram("retrieval_batch_inference_seconds", "", registry=registry)
    rejections = Counter(
        "retrieval_admission_rejections", "", ("reason",), registry=registry
    )  # exposed as ..._total
    return registry, size, wait, inference, rejections


def test_window_is_what_was_observed_between_the_scrapes() -> None:
    registry, size, wait, inference, rejections = _registry()
    size.observe(7)
    wait.observe(9.0)
    rejections.labels("queue_full").inc(5)
    before = generate_latest(registry).decode()
    batches = [(3, 0.020), (1, 0.008), (4, 0.025)]
    for n, seconds in batches:
        size.observe(n)
        inference.observe(seconds)
    waits = [0.001, 0.002, 0.0005, 0.004, 0.003, 0.001, 0.002, 0.0015]
    for w in waits:
        wait.observe(w)
    rejections.labels("queue_full").inc(2)
    rejections.labels("client_gone").inc()
    after = generate_latest(registry).decode()

    window = batch_window(before, after)
    assert window.exported
    assert window.batches == 3 and window.images == 8
    assert window.mean_batch_size == pytest.approx(8 / 3)
    assert window.batch_inference_s == pytest.approx(0.053)
    assert window.mean_batch_inference_ms == pytest.approx(1000 * 0.053 / 3)
    assert window.queue_waits == 8
    assert window.mean_queue_wait_ms == pytest.approx(1000 * sum(waits) / 8)
    assert window.rejections == {"queue_full": 2, "client_gone": 1, "queue_timeout": 0}


def test_a_service_without_batching_exports_nothing_and_reads_as_zero() -> None:
    registry = CollectorRegistry()
    Histogram("retrieval_stage_seconds", "", ("stage",), registry=registry).labels("decode")
    text = generate_latest(registry).decode()
    window = batch_window(text, text)
    assert not window.exported
    assert (window.batches, window.images, window.mean_batch_size) == (0, 0, 0.0)
    assert window.rejections == {"queue_full": 0, "queue_timeout": 0, "client_gone": 0}
