"""One open-loop step at a fixed arrival rate, read the way the overload targets need it:
accepted requests apart from 503 rejections, other failures by kind, and whether the generator
really offered the rate it was asked for.

Latencies are from each request's scheduled send time (``bench/loadtest/open_loop.py``), so a
rejection that waited in some queue before its 503 is charged that wait.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.loadtest.latency_stats import nearest_rank_percentile
from bench.loadtest.request_sample import RequestSample

# A step that sent less than this share of its requested rate did not offer the load it is
# judged at: invalid, neither a pass nor a miss.
MIN_ACHIEVED_SHARE = 0.95
IN_FLIGHT_CAP = "in-flight cap"  # bench/loadtest/open_loop.py's error for a dropped arrival


@dataclass(frozen=True)
class OpenLoopStep:
    """``due``: requests on the schedule; ``sent``: those that left (the rest were ``dropped``
    at the generator's in-flight cap). ``achieved_rps``: ``sent`` over the seconds the sending
    took (at least the scheduled duration), so late sends lower it as drops do.
    ``improper_503``: 503s without ``Retry-After`` or a problem+json body, counted among the
    other 5xx rather than as rejections. Latencies in ms, ``nan`` when there were none."""

    requested_rps: float
    duration_s: float
    due: int
    sent: int
    dropped: int
    achieved_rps: float
    accepted: int
    accepted_p50_ms: float
    accepted_p99_ms: float
    rejected: int
    rejected_p99_ms: float
    rejected_max_ms: float
    other_5xx: int
    other_non_2xx: int
    connection_errors: int
    timeouts: int
    send_lag_p99_ms: float

    @property
    def achieved_share(self) -> float:
        return self.achieved_rps / self.requested_rps

    @property
    def valid(self) -> bool:
        return self.achieved_share >= MIN_ACHIEVED_SHARE


def _p(values: Sequence[float], q: float) -> float:
    return nearest_rank_percentile(values, q) if values else math.nan


def open_loop_step(
    samples: Sequence[RequestSample], *, requested_rps: float, duration_s: float, improper_503: int
) -> OpenLoopStep:
    """Classify one step's ``samples``. ``improper_503``: how many of its 503 answers were not
    proper rejections (the lean client's tally over the step)."""
    sent = [s for s in samples if s.sent_s is not None]
    last_sent = max((s.sent_s for s in sent if s.sent_s is not None), default=0.0)
    span = max(duration_s, last_sent + 1 / requested_rps)
    ms = {  # latency in ms of each sample that has one
        id(s): 1000 * s.latency_s for s in samples if s.latency_s is not None
    }
    accepted = [ms[id(s)] for s in samples if s.ok]
    answered_503 = [ms[id(s)] for s in samples if s.error is None and s.status == 503]
    transport = [s for s in sent if s.error is not None]
    timeouts = sum(s.error == "timeout" for s in transport)
    other_5xx = sum(
        s.error is None and s.status is not None and s.status >= 500 and s.status != 503
        for s in samples
    )
    non_2xx = sum(
        s.error is None and s.status is not None and not 200 <= s.status < 300 for s in samples
    )
    proper_rejections = len(answered_503) - improper_503
    return OpenLoopStep(
        requested_rps=requested_rps,
        duration_s=duration_s,
        due=len(samples),
        sent=len(sent),
        dropped=sum(s.error == IN_FLIGHT_CAP for s in samples),
        achieved_rps=len(sent) / span,
        accepted=len(accepted),
        accepted_p50_ms=_p(accepted, 50),
        accepted_p99_ms=_p(accepted, 99),
        rejected=proper_rejections,
        rejected_p99_ms=_p(answered_503, 99),
        rejected_max_ms=max(answered_503, default=math.nan),
        other_5xx=other_5xx + improper_503,
        other_non_2xx=non_2xx - other_5xx - len(answered_503),
        connection_errors=len(transport) - timeouts,
        timeouts=timeouts,
        send_lag_p99_ms=_p(
            [1000 * (s.sent_s - s.scheduled_s) for s in sent if s.sent_s is not None], 99
        ),
    )
