"""Per-endpoint throughput, latency percentiles and error rate of a list of samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bench.loadtest.request_sample import RequestSample

ALL_ENDPOINTS = "all"


def nearest_rank_percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``0 < q <= 100``) by the nearest-rank definition.

    The smallest value with at least ``q`` % of the values at or below it: always an observed
    value, never interpolated, so a p99 is a latency some request really had. ``nan`` when
    ``values`` is empty.
    """
    if not 0 < q <= 100:
        raise ValueError(f"q must be in (0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class EndpointStats:
    """Latencies in milliseconds (``nan`` when nothing was answered).

    ``requests``: due requests (sent + dropped). ``errors``: not 2xx, no answer, or dropped.
    ``rejected``: of the errors, the 503 answers (the service shedding load, or not ready).
    Percentiles cover every request that was sent (errors included: a timeout is a latency a
    client had); dropped requests have no latency, so a level with drops is over capacity and
    its percentiles are lower bounds. ``throughput_rps``: 2xx answers per second of ``wall_s``.
    ``send_lag_p99_ms``: how late the generator itself sent (open loop); large values mean the
    client, not the server, was the bottleneck.
    """

    endpoint: str
    requests: int
    ok: int
    errors: int
    rejected: int
    dropped: int
    error_rate: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float


def endpoint_stats(endpoint: str, samples: Sequence[RequestSample], wall_s: float) -> EndpointStats:
    latencies = [s.latency_s * 1000 for s in samples if s.latency_s is not None]
    lags = [(s.sent_s - s.scheduled_s) * 1000 for s in samples if s.sent_s is not None]
    ok = sum(s.ok for s in samples)
    errors = len(samples) - ok
    return EndpointStats(
        endpoint=endpoint,
        requests=len(samples),
        ok=ok,
        errors=errors,
        rejected=sum(s.error is None and s.status == 503 for s in samples),
        dropped=sum(s.dropped for s in samples),
        error_rate=errors / len(samples) if samples else math.nan,
        throughput_rps=ok / wall_s if wall_s > 0 else math.nan,
        p50_ms=nearest_rank_percentile(latencies, 50),
        p95_ms=nearest_rank_percentile(latencies, 95),
        p99_ms=nearest_rank_percentile(latencies, 99),
        max_ms=max(latencies) if latencies else math.nan,
        send_lag_p99_ms=nearest_rank_percentile(lags, 99),
    )


def summarize(samples: Sequence[RequestSample], wall_s: float) -> list[EndpointStats]:
    """One entry per endpoint (sorted by name), then the ``"all"`` entry over every sample."""
    endpoints = sorted({s.endpoint for s in samples})
    out = [endpoint_stats(e, [s for s in samples if s.endpoint == e], wall_s) for e in endpoints]
    out.append(endpoint_stats(ALL_ENDPOINTS, samples, wall_s))
    return out
