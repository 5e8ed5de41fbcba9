"""An open-loop step's samples classified by hand: accepted, 503 rejections, other failures by
kind, drops, and the send rate the generator really achieved."""

from __future__ import annotations

import math

import pytest

from bench.loadtest.request_sample import RequestSample
from bench.open_loop_step import open_loop_step


def _sample(
    t: float,
    latency: float | None,
    status: int | None,
    error: str | None = None,
    sent: float | None = None,
) -> RequestSample:
    return RequestSample("POST /search", t, t if sent is None else sent, latency, status, error)


def test_classification_by_kind() -> None:
    samples = [
        _sample(0.0, 0.010, 200),
        _sample(0.1, 0.030, 200),
        _sample(0.2, 0.020, 200),
        _sample(0.3, 0.004, 503),
        _sample(0.4, 0.006, 503),
        _sample(0.5, 0.050, 500),
        _sample(0.6, 0.010, 404),
        _sample(0.7, 1.000, None, "timeout"),
        _sample(0.8, 0.001, None, "ConnectError"),
        RequestSample("POST /search", 0.9, None, None, None, "in-flight cap"),
    ]
    step = open_loop_step(samples, requested_rps=10, duration_s=1.0, improper_503=1)
    assert (step.due, step.sent, step.dropped) == (10, 9, 1)
    assert step.accepted == 3
    assert step.accepted_p50_ms == pytest.approx(20) and step.accepted_p99_ms == pytest.approx(30)
    # One of the two 503s lacked Retry-After: it counts with the 500 as another 5xx.
    assert step.rejected == 1 and step.other_5xx == 2
    assert step.rejected_p99_ms == pytest.approx(6) and step.rejected_max_ms == pytest.approx(6)
    assert step.other_non_2xx == 1  # the 404
    assert (step.connection_errors, step.timeouts) == (1, 1)
    # 9 of 10 sent within the second: 90 %, below the 95 % a valid step needs.
    assert step.achieved_rps == pytest.approx(9.0) and not step.valid


def test_late_sends_lower_the_achieved_rate() -> None:
    on_time = [_sample(i / 100, 0.01, 200) for i in range(100)]
    assert open_loop_step(on_time, requested_rps=100, duration_s=1.0, improper_503=0).valid
    # The same 100 requests, the last two sent 0.2 s late: they took 1.2 s to send.
    late = on_time[:-2] + [_sample(t, 0.01, 200, sent=t + 0.2) for t in (0.98, 0.99)]
    step = open_loop_step(late, requested_rps=100, duration_s=1.0, improper_503=0)
    assert step.achieved_rps == pytest.approx(100 / 1.2)
    assert step.achieved_share < 0.95 and not step.valid
    assert step.send_lag_p99_ms == pytest.approx(200)


def test_nothing_answered_gives_no_figures() -> None:
    step = open_loop_step(
        [_sample(0.0, 2.0, None, "timeout")], requested_rps=1, duration_s=1.0, improper_503=0
    )
    assert step.accepted == 0 and math.isnan(step.accepted_p99_ms)
    assert math.isnan(step.rejected_p99_ms) and math.isnan(step.rejected_max_ms)
