"""EventLogSummary: the first event of a kind is logged as it comes, the rest once per interval
as a count; SummarizingFilter turns other libraries' per-connection lines into such events."""

from __future__ import annotations

import logging

import pytest

from app.event_log_summary import EventLogSummary, SummarizingFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_is_one_line_per_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    summary = EventLogSummary(logging.getLogger("t.summary"), interval_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.summary"):
        for _ in range(1000):
            summary.record("header_timeout", "closed connections (header timeout)")
            clock.now += 0.005  # 1000 in 5 s
        summary.record("body_timeout", "closed connections (body timeout)", first_detail="a:1")
        clock.now += 6
        summary.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "closed connections (header timeout): 1; more of these are counted and logged once per "
        "10 s",
        "closed connections (body timeout): 1 (a:1); more of these are counted and logged once "
        "per 10 s",
        "closed connections (header timeout): 999 in the last 11 s",
    ]
    assert summary.totals == {"header_timeout": 1000, "body_timeout": 1}
    # Quiet for an interval: the next one is logged at once again.
    clock.now += 20
    summary.flush()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="t.summary"):
        summary.record("header_timeout", "closed connections (header timeout)")
    (again,) = [r.getMessage() for r in caplog.records]
    assert again.endswith("once per 10 s")


def test_the_filter_summarizes_only_the_messages_it_is_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summary = EventLogSummary(logging.getLogger("t.filtered.summary"), interval_s=60)
    noisy = logging.getLogger("t.filtered.noisy")
    noisy.addFilter(SummarizingFilter(summary, {"Invalid HTTP request": "invalid requests"}))
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            noisy.warning("Invalid HTTP request received.")
        noisy.warning("something else")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "invalid requests: 1; more of these are counted and logged once per 60 s",
        "something else",
    ]
    assert sum(summary.totals.values()) == 50
