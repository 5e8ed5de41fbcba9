"""The open-loop generator keeps its schedule against a slow server and charges queueing delay
to latency (no coordinated omission); a closed-loop run against the same server does not."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time

import httpx
import pytest

from bench.loadtest.arrival_schedule import constant_rate_schedule
from bench.loadtest.closed_loop import run_closed_loop
from bench.loadtest.latency_stats import summarize
from bench.loadtest.open_loop import run_open_loop
from bench.loadtest.request_sample import Operation, RequestSample
from tests.bench.loadtest.slow_http_server import slow_http_server

SERVICE_S = 0.05  # the server's time per request: capacity 20 requests/s
RATE = 50.0  # offered load: 2.5x capacity, so a queue must build
DURATION_S = 0.8
N = 40  # RATE * DURATION_S
INTERVAL_S = 1 / RATE
# Slack for one request's scheduling jitter on a loaded 2-core CI machine (a 37 ms hiccup has
# been seen there). A generator that waited for answers would be far outside it: it sends at the
# server's 20 requests/s, so its 40th request would leave ~1.2 s late.
SEND_TOLERANCE_S = 0.15
# The typical request must still leave on time, not merely within the per-request slack.
MEDIAN_SEND_LAG_S = 0.02


def _get(i: int) -> Operation:
    async def send(client: httpx.AsyncClient) -> int:
        return (await client.get(f"/r/{i}")).status_code

    return Operation("GET /r", send)


def _client(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    return httpx.AsyncClient(base_url=url, timeout=30, limits=limits)


async def _open(
    url: str, *, max_in_flight: int, rate: float, duration: float
) -> list[RequestSample]:
    async with _client(url) as client:
        return await run_open_loop(
            client, _get, constant_rate_schedule(rate, duration), max_in_flight=max_in_flight
        )


async def _closed(url: str, *, users: int, duration: float) -> list[RequestSample]:
    async with _client(url) as client:
        return await run_closed_loop(client, _get, users=users, duration_s=duration)


def test_open_loop_sends_on_schedule_and_counts_queueing_delay() -> None:
    with slow_http_server(SERVICE_S) as url:
        samples = asyncio.run(_open(url, max_in_flight=200, rate=RATE, duration=DURATION_S))

    assert len(samples) == N
    assert all(s.ok for s in samples)
    # Sent on schedule although the server answers 2.5x slower than requests arrive.
    for i, s in enumerate(samples):
        assert s.scheduled_s == pytest.approx(i * INTERVAL_S)
        assert s.sent_s is not None
        assert 0 <= s.sent_s - s.scheduled_s < SEND_TOLERANCE_S
    lags = [s.sent_s - s.scheduled_s for s in samples if s.sent_s is not None]
    assert statistics.median(lags) < MEDIAN_SEND_LAG_S
    # Hand-derived lower bounds for a serial server: the j-th completion (j = 1..N) cannot come
    # before j * SERVICE_S, and request i was due at i * INTERVAL_S, so
    #   sum(latency) >= SERVICE_S * N(N+1)/2 - INTERVAL_S * N(N-1)/2
    #   max(latency) >= N * SERVICE_S - (N-1) * INTERVAL_S        (the last completion)
    latencies = [s.latency_s for s in samples if s.latency_s is not None]
    mean_bound = SERVICE_S * (N + 1) / 2 - INTERVAL_S * (N - 1) / 2  # 0.635 s
    max_bound = N * SERVICE_S - (N - 1) * INTERVAL_S  # 1.22 s
    assert statistics.fmean(latencies) >= mean_bound
    assert max(latencies) >= max_bound
    # ...and no request waits longer than the whole queue plus slack (measurement not inflated).
    assert max(latencies) <= N * SERVICE_S + 0.5
    # Later arrivals wait longer: latency grows along the schedule.
    assert statistics.fmean(latencies[-10:]) > statistics.fmean(latencies[:10]) + 0.5


def test_closed_loop_against_the_same_server_reports_far_smaller_latency() -> None:
    with slow_http_server(SERVICE_S) as url:
        open_samples = asyncio.run(_open(url, max_in_flight=200, rate=RATE, duration=DURATION_S))
        closed_samples = asyncio.run(_closed(url, users=1, duration=DURATION_S))

    open_p50 = summarize(open_samples, 1.0)[-1].p50_ms / 1000
    closed_p50 = summarize(closed_samples, 1.0)[-1].p50_ms / 1000
    # The closed-loop user waits for each answer, so it only ever sees the service time...
    assert SERVICE_S <= closed_p50 < 2 * SERVICE_S
    # ...and sent far fewer requests than the open-loop schedule in the same time.
    assert len(closed_samples) <= DURATION_S / SERVICE_S + 1 < N
    # The open-loop median includes the queue that builds at 2.5x capacity (about 0.6 s).
    assert open_p50 > 5 * closed_p50


def test_in_flight_cap_drops_arrivals_and_counts_them_as_errors() -> None:
    service_s, rate, duration, cap = 0.1, 50.0, 0.4, 3
    with slow_http_server(service_s) as url:
        samples = asyncio.run(_open(url, max_in_flight=cap, rate=rate, duration=duration))

    n = round(rate * duration)
    assert len(samples) == n
    sent = [s for s in samples if not s.dropped]
    dropped = [s for s in samples if s.dropped]
    # At most `cap` outstanding, and the serial server frees a slot every service_s at best:
    # over the schedule (duration plus one interval of lead) no more can have been sent.
    assert len(sent) <= cap + (duration + 1 / rate) / service_s + 1
    assert len(dropped) == n - len(sent) > 0
    assert all(s.error == "in-flight cap" and s.status is None and not s.ok for s in dropped)
    overall = summarize(samples, duration)[-1]
    assert overall.dropped == len(dropped)
    assert overall.error_rate == pytest.approx(len(dropped) / n)


def test_client_delay_is_charged_to_latency() -> None:
    """A generator that falls behind its schedule (here: each send blocks the event loop, as a
    saturated client would) must report that delay inside the latency, not hide it."""
    block_s = 0.03  # longer than the 0.02 s interval: every send pushes the next one later

    def blocking(i: int) -> Operation:
        async def send(client: httpx.AsyncClient) -> int:
            time.sleep(block_s)  # deliberately blocks the event loop
            return (await client.get(f"/r/{i}")).status_code

        return Operation("GET /r", send)

    async def go(url: str) -> list[RequestSample]:
        async with _client(url) as client:
            return await run_open_loop(
                client, blocking, constant_rate_schedule(RATE, 0.4), max_in_flight=200
            )

    with slow_http_server(0.0) as url:
        samples = asyncio.run(go(url))

    lags = [s.sent_s - s.scheduled_s for s in samples if s.sent_s is not None]
    assert lags[-1] > 0.05  # the generator fell behind...
    for s in samples:
        assert s.sent_s is not None and s.latency_s is not None
        # ...and every latency includes its request's lag plus the blocked send itself.
        assert s.latency_s >= (s.sent_s - s.scheduled_s) + block_s
    assert summarize(samples, 1.0)[-1].send_lag_p99_ms > 50


def test_the_generators_collector_is_off_during_the_window() -> None:
    seen: list[bool] = []

    def probe(i: int) -> Operation:
        async def send(client: httpx.AsyncClient) -> int:
            seen.append(gc.isenabled())
            return 200

        return Operation("probe", send)

    async def go() -> list[RequestSample]:
        async with _client("http://127.0.0.1:9") as client:
            return await run_open_loop(
                client, probe, constant_rate_schedule(100, 0.05), max_in_flight=4
            )

    assert gc.isenabled()
    samples = asyncio.run(go())
    assert len(samples) == len(seen) == 5 and not any(seen)
    assert gc.isenabled()
