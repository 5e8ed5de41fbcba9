"""Nearest-rank percentiles and per-endpoint summaries against hand values and a brute force."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.loadtest.latency_stats import nearest_rank_percentile, summarize
from bench.loadtest.request_sample import RequestSample


def test_hand_values() -> None:
    # The classic nearest-rank example: 5 values, ranks ceil(q/100 * 5).
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert nearest_rank_percentile(values, 5) == 15
    assert nearest_rank_percentile(values, 30) == 20
    assert nearest_rank_percentile(values, 40) == 20
    assert nearest_rank_percentile(values, 50) == 35
    assert nearest_rank_percentile(values, 100) == 50
    assert math.isnan(nearest_rank_percentile([], 50))
    with pytest.raises(ValueError):
        nearest_rank_percentile(values, 0)


@given(
    st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=60),
    st.floats(0.01, 100),
)
def test_matches_brute_force_definition(values: list[float], q: float) -> None:
    # Smallest observed value with at least q % of the values at or below it.
    oracle = min(v for v in values if sum(x <= v for x in values) >= q / 100 * len(values))
    assert nearest_rank_percentile(values, q) == oracle


def test_summary_counts_errors_and_drops_per_endpoint() -> None:
    samples = [
        RequestSample("a", 0.0, 0.0, 0.010, 200),
        RequestSample("a", 0.1, 0.1, 0.030, 201),
        RequestSample("a", 0.2, 0.2, 0.020, 503),
        RequestSample("b", 0.3, 0.305, 1.000, None, "timeout"),
        RequestSample("b", 0.4, None, None, None, "in-flight cap"),
        RequestSample("b", 0.5, 0.5, 0.040, 200),
    ]
    a, b, total = summarize(samples, wall_s=2.0)
    assert (a.endpoint, a.requests, a.ok, a.errors, a.dropped) == ("a", 3, 2, 1, 0)
    assert a.rejected == 1  # the 503, also among the errors
    assert a.throughput_rps == pytest.approx(1.0)  # 2 ok in 2 s
    assert a.p50_ms == pytest.approx(20.0) and a.p99_ms == pytest.approx(30.0)
    assert (b.requests, b.ok, b.errors, b.dropped, b.rejected) == (3, 1, 2, 1, 0)
    assert b.error_rate == pytest.approx(2 / 3)
    # The timeout's latency counts; the drop has none.
    assert b.p99_ms == pytest.approx(1000.0) and b.p50_ms == pytest.approx(40.0)
    assert b.send_lag_p99_ms == pytest.approx(5.0)
    assert (total.endpoint, total.requests, total.ok, total.errors) == ("all", 6, 3, 3)
