"""Stage times from /metrics text: a real prometheus_client registry, observed by hand."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.stage_metrics import histogram_totals, window_times


def _registry() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    hist = Histogram("retrieval_stage_seconds", "stages", ("stage",), registry=registry)
    for stage in ("decode", "inference", "index_search"):
        hist.labels(stage=stage)
    return registry, hist


def test_window_is_the_difference_of_two_scrapes() -> None:
    registry, hist = _registry()
    hist.labels(stage="decode").observe(0.5)  # before the window: must not count
    before = generate_latest(registry).decode()
    for seconds in (0.010, 0.020, 0.030):
        hist.labels(stage="decode").observe(seconds)
    hist.labels(stage="inference").observe(0.2)
    after = generate_latest(registry).decode()

    window = {
        t.name: t
        for t in window_times(
            histogram_totals(before, "retrieval_stage_seconds", "stage"),
            histogram_totals(after, "retrieval_stage_seconds", "stage"),
        )
    }
    assert sorted(window) == ["decode", "index_search", "inference"]
    assert window["decode"].calls == 3
    assert window["decode"].total_s == pytest.approx(0.060)
    assert window["decode"].mean_ms == pytest.approx(20.0)
    assert window["inference"].calls == 1 and window["inference"].mean_ms == pytest.approx(200)
    assert window["index_search"].calls == 0 and window["index_search"].mean_ms == 0.0


def test_other_metrics_and_unlabelled_series_are_ignored() -> None:
    registry, hist = _registry()
    other = Histogram("http_request_duration_seconds", "x", ("route",), registry=registry)
    other.labels(route="/search").observe(1.0)
    hist.labels(stage="decode").observe(0.25)
    text = generate_latest(registry).decode()
    totals = histogram_totals(text, "retrieval_stage_seconds", "stage")
    assert totals["decode"] == (pytest.approx(0.25), 1.0)
    assert "/search" not in totals
    assert histogram_totals(text, "http_request_duration_seconds", "route") == {
        "/search": (pytest.approx(1.0), 1.0)
    }
