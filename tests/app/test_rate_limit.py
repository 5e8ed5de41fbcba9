"""Per-key token buckets: the arithmetic against a brute-force oracle, and 429s over HTTP."""

from __future__ import annotations

import random

import httpx
import pytest

from app.api_keys import Scope, make_key
from app.rate_limit import RateLimiter
from tests.app.conftest import ServiceFactory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oracle_grants(rate: float, burst: int, times: list[float]) -> list[bool]:
    """Brute force: tokens accrue in steps of 1 ms (times are whole milliseconds), capped."""
    tokens_ms = burst * 1000  # in thousandths of a token, exact integers
    cap_ms = burst * 1000
    per_ms = round(rate)  # thousandths of a token per millisecond at `rate` tokens per second
    granted, last = [], round(times[0] * 1000)
    for t in times:
        t_ms = round(t * 1000)
        for _ in range(t_ms - last):
            tokens_ms = min(cap_ms, tokens_ms + per_ms)
        last = t_ms
        if tokens_ms >= 1000:
            tokens_ms -= 1000
            granted.append(True)
        else:
            granted.append(False)
    return granted


@pytest.mark.parametrize("seed", range(6))
def test_token_bucket_matches_the_oracle(seed: int) -> None:
    rng = random.Random(seed)
    rate, burst = rng.choice([1, 2, 5, 20]), rng.choice([1, 3, 10])
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock=clock)
    start = clock.now
    times, t = [], start
    for _ in range(400):
        t += rng.choice([0, 0, 0.001, 0.01, 0.05, 0.2, 1.5])
        times.append(round(t, 3))
    got = []
    for t in times:
        clock.now = t
        got.append(limiter.acquire("k") == 0.0)
    assert got == oracle_grants(rate, burst, times)
    assert any(got) and not all(got)  # the sequence exercised both answers


def test_wait_is_the_time_until_the_next_token_and_keys_are_independent() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # another key has its own full bucket
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    clock.now += 100
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refilled to burst, not beyond
    assert RateLimiter.retry_after_header(0.01) == "1"
    assert RateLimiter.retry_after_header(1.2) == "2"
    assert RateLimiter(0.5, 0).burst == 1 and RateLimiter(7, 0).burst == 7  # 0: a second's worth
    with pytest.raises(ValueError):
        RateLimiter(0, 1)


def test_429_with_retry_after_over_http(service_factory: ServiceFactory) -> None:
    key_a, a = make_key("a", [Scope.READ])
    key_b, b = make_key("b", [Scope.READ])
    keys = f"{a.hash_line()};{b.hash_line()}"
    # 0.2/s: the bucket cannot refill within the test, so the third request is refused.
    with service_factory(api_keys=keys, rate_limit_per_second=0.2, rate_limit_burst=2) as client:
        statuses = [
            client.get("/items", headers={"X-API-Key": key_a}).status_code for _ in range(2)
        ]
        assert statuses == [200, 200]
        refused = client.get("/items", headers={"X-API-Key": key_a})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 5
        assert "rate limit of 0.2 requests/s (burst 2)" in refused.json()["detail"]
        assert client.get("/items", headers={"X-API-Key": key_b}).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes are never limited
        assert client.get("/items", headers={"X-API-Key": "wrong"}).status_code == 401


def test_anonymous_callers_share_one_bucket(service_factory: ServiceFactory) -> None:
    with service_factory(rate_limit_per_second=0.2, rate_limit_burst=1) as client:
        assert client.get("/items").status_code == 200
        with httpx.Client(base_url=str(client.base_url)) as other:
            assert other.get("/items").status_code == 429
