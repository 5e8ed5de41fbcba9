"""The store's circuit breaker as a state machine on a fake clock (no sleeps): closed → open after
N consecutive store failures, refusals with the cooldown left as Retry-After, one half-open
probe even under concurrency, the probe's outcome closing or re-opening it; in the lane:
refusals never reach the pool, request errors of the store's own (404-type) do not count; and
through the real app on a private Redis stopped by SIGSTOP, then continued."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.circuit_breaker import BreakerState, CircuitBreaker, StoreBreakerOpenError
from app.metrics import ServiceMetrics
from app.store_lane import StoreLane
from store.errors import ItemNotFoundError, StoreUnavailableError
from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> BreakerState:
    # Read afresh each time (mypy would otherwise narrow a property across calls).
    return breaker.state


def _opened(clock: FakeClock, failures: int = 3, cooldown_s: float = 2.5) -> CircuitBreaker:
    breaker = CircuitBreaker(failures, cooldown_s, clock=clock)
    for _ in range(failures):
        assert breaker.admit() is False
        breaker.failed(False)
    assert state(breaker) is BreakerState.OPEN
    return breaker


def test_opens_after_n_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 2.0, clock=FakeClock())
    for _ in range(2):
        breaker.failed(breaker.admit())
    breaker.succeeded(breaker.admit())  # a success in between: the count starts again
    for _ in range(2):
        breaker.failed(breaker.admit())
    assert state(breaker) is BreakerState.CLOSED
    breaker.failed(breaker.admit())
    assert state(breaker) is BreakerState.OPEN


def test_refuses_with_the_cooldown_left_rounded_up_until_it_is_over() -> None:
    clock = FakeClock()
    breaker = _opened(clock, cooldown_s=2.5)
    for elapsed, expected in ((0.0, 3), (0.4, 3), (0.5, 2), (1.49, 2), (2.2, 1), (2.49, 1)):
        clock.now = 100.0 + elapsed
        with pytest.raises(StoreBreakerOpenError) as refused:
            breaker.admit()
        assert refused.value.retry_after_s == expected, elapsed
    clock.now = 102.5
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.admit() is True  # the probe


def test_a_successful_probe_closes_and_a_failed_one_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    breaker = _opened(clock, cooldown_s=2.0)
    clock.now += 2.0
    probe = breaker.admit()
    assert probe is True
    with pytest.raises(StoreBreakerOpenError) as refused:
        breaker.admit()  # the probe is in flight: the others wait
    assert refused.value.retry_after_s == 1
    clock.now += 0.7  # the probe took a while: the new cooldown runs from its failure
    breaker.failed(probe)
    assert state(breaker) is BreakerState.OPEN
    clock.now += 1.9
    with pytest.raises(StoreBreakerOpenError):
        breaker.admit()
    clock.now += 0.1
    probe = breaker.admit()
    breaker.succeeded(probe)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.admit() is False and breaker.admit() is False
    # Closed again with a fresh count: N more failures to open.
    breaker.failed(False)
    breaker.failed(False)
    assert state(breaker) is BreakerState.CLOSED


def test_outcomes_of_calls_let_through_before_it_opened_do_not_decide() -> None:
    clock = FakeClock()
    breaker = _opened(clock, cooldown_s=2.0)
    clock.now += 1.5
    breaker.succeeded(False)  # a slow call from before: not the probe's evidence
    assert state(breaker) is BreakerState.OPEN
    breaker.failed(False)  # nor does a late failure stretch the cooldown
    clock.now += 0.5
    assert state(breaker) is BreakerState.HALF_OPEN


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = FakeClock()
    breaker = _opened(clock)
    clock.now += 10
    breaker.abandoned(breaker.admit())
    assert breaker.admit() is True


def test_one_probe_among_many_concurrent_callers() -> None:
    clock = FakeClock()
    breaker = _opened(clock)
    clock.now += 10
    callers = 16
    start = threading.Barrier(callers)

    def call() -> str:
        start.wait(5)
        try:
            return "probe" if breaker.admit() else "through"
        except StoreBreakerOpenError:
            return "refused"

    for _ in range(20):  # races are rare: many rounds, each from a fresh half-open state
        with ThreadPoolExecutor(max_workers=callers) as pool:
            outcomes = sorted(pool.map(lambda _: call(), range(callers)))
        assert outcomes == ["probe"] + ["refused"] * (callers - 1)
        breaker.failed(True)
        clock.now += 10


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0.0)


def test_the_lane_refuses_without_submitting_and_counts_only_store_failures() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        metrics = ServiceMetrics()
        breaker = CircuitBreaker(2, 3.0, clock=clock)
        lane = StoreLane(slots=1, queue=0, deadline_s=5, metrics=metrics, breaker=breaker)
        calls: list[str] = []

        def unknown_item() -> None:
            calls.append("404")
            raise ItemNotFoundError("no such item")

        def unreachable() -> None:
            calls.append("down")
            raise StoreUnavailableError("connection refused")

        # 404-type answers are the store answering: never open it, and reset the count.
        for fn in (unreachable, unknown_item, unreachable, unknown_item, unknown_item):
            with pytest.raises((ItemNotFoundError, StoreUnavailableError)):
                await lane.run(fn)
        assert state(breaker) is BreakerState.CLOSED and lane.breaker_state == "closed"
        for _ in range(2):
            with pytest.raises(StoreUnavailableError):
                await lane.run(unreachable)
        assert state(breaker) is BreakerState.OPEN
        assert metrics.registry.get_sample_value("retrieval_store_breaker_state") == 2
        before = list(calls)
        with pytest.raises(StoreBreakerOpenError) as refused:
            await lane.run(lambda: calls.append("refused call ran"))
        assert refused.value.retry_after_s == 3 and calls == before  # never submitted
        assert metrics.registry.get_sample_value("retrieval_store_breaker_refusals_total") == 1
        clock.now += 3.0
        assert lane.breaker_state == "half-open"
        assert metrics.registry.get_sample_value("retrieval_store_breaker_state") == 1
        assert await lane.run(lambda: 7) == 7  # the probe
        assert lane.breaker_state == "closed"
        assert metrics.registry.get_sample_value("retrieval_store_breaker_state") == 0
        lane.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_stalled_redis_is_refused_at_once_then_written_again_once_it_is_back(
    service_factory: ServiceFactory,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    photo_views: dict[str, list[bytes]],
) -> None:
    url, proc = own_redis
    deadline_s, failures, cooldown_s = 0.3, 3, 1.0
    settings = {
        "redis_url": url,
        "redis_namespace": f"t{uuid.uuid4().hex[:8]}",
        "store_deadline_ms": int(deadline_s * 1000),
        "store_breaker_failures": failures,
        "store_breaker_cooldown_s": cooldown_s,
    }
    with service_factory(**settings) as client:
        base = str(client.base_url)
        photo = photo_views["chelsea"]
        assert (
            client.post("/items/cat/images", files={"images": ("a.jpg", photo[0])}).status_code
            == 201
        )
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["store_breaker"] == "closed"
        os.kill(proc.pid, signal.SIGSTOP)

        def get_cat(_: int) -> int:
            with httpx.Client(base_url=base, timeout=10) as c:
                return c.get("/items/cat").status_code

        # N reads at once, each failing at the deadline: the breaker opens.
        with ThreadPoolExecutor(max_workers=failures) as pool:
            assert list(pool.map(get_cat, range(failures))) == [503] * failures
        refusal_s = []
        for _ in range(5):
            start = time.monotonic()
            r = client.get("/items/cat")
            refusal_s.append(time.monotonic() - start)
            assert (
                r.status_code == 503 and r.json()["detail"] == StoreBreakerOpenError.public_detail
            )
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.headers["retry-after"] == "1"  # ceil of what is left of 1 s
        # Refused without waiting on the store: far under the deadline (no breaker: >= 0.3 s).
        assert max(refusal_s) < deadline_s / 3, refusal_s
        start = time.monotonic()
        ready = client.get("/readyz")
        assert time.monotonic() - start < deadline_s / 3
        assert ready.status_code == 503 and ready.json()["store_breaker"] == "open"
        assert metric_value(client, "retrieval_store_breaker_state") == 2
        assert metric_value(client, "retrieval_store_breaker_refusals_total") == 6
        search = client.post("/search", files={"image": ("q.jpg", photo[4])})
        assert search.status_code == 200  # searches need no store
        # The cooldown over, the store still stalled: the one probe fails at the deadline and
        # the breaker opens again.
        time.sleep(cooldown_s)
        start = time.monotonic()
        assert client.get("/items/cat").status_code == 503
        assert time.monotonic() - start >= deadline_s
        assert client.get("/readyz").json()["store_breaker"] == "open"
        os.kill(proc.pid, signal.SIGCONT)
        # Back, but the cooldown is not over: still refused, the store untried.
        refused = client.post("/items/dog/images", files={"images": ("b.jpg", photo[1])})
        assert refused.status_code == 503, refused.text
        time.sleep(cooldown_s)
        written = client.post("/items/dog/images", files={"images": ("b.jpg", photo[1])})
        assert written.status_code == 201, written.text  # the probe: closes the breaker
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["store_breaker"] == "closed"
        assert client.get("/items/dog").status_code == 200
        assert metric_value(client, "retrieval_store_breaker_state") == 0
