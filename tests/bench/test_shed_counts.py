"""The rejection counters read from a real ``ServiceMetrics`` exposition, and their deltas."""

from __future__ import annotations

from prometheus_client import generate_latest

from app.metrics import ServiceMetrics
from bench.shed_counts import describe, shed_between, shed_counts


def test_rejections_by_reason_between_two_scrapes() -> None:
    metrics = ServiceMetrics()
    before = shed_counts(generate_latest(metrics.registry).decode())
    assert before["retrieval_admission_rejections:queue_full"] == 0
    assert before["retrieval_store_lane_rejections"] == 0
    metrics.admission_rejections.labels(reason="queue_full").inc(3)
    metrics.admission_rejections.labels(reason="queue_timeout").inc()
    metrics.store_deadline_exceeded.inc(2)
    after = shed_counts(generate_latest(metrics.registry).decode())
    shed = shed_between(before, after)
    assert shed == {
        "retrieval_admission_rejections:queue_full": 3,
        "retrieval_admission_rejections:queue_timeout": 1,
        "retrieval_store_deadline_exceeded": 2,
    }
    assert describe(shed) == (
        "3 admission_rejections:queue_full, 1 admission_rejections:queue_timeout, "
        "2 store_deadline_exceeded"
    )
    assert describe(shed_between(after, after)) == "none turned away by the service"
