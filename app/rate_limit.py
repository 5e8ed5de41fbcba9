"""Per-key request rate limits: one token bucket per API key, held in this process.

Each key's bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request
takes one token or, when there is none, is told how long until there will be one (429 with
``Retry-After``). The buckets live in the replica's memory: behind a load balancer over N
replicas a key gets up to N times the rate. Buckets are created for configured keys (and the
one anonymous caller) only, so their number is bounded by the configuration.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_EPSILON = 1e-9


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key id. ``clock`` is injectable so tests can drive time."""

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (0 means no limiter at all)")
        self.rate = rate
        self.burst = burst if burst > 0 else max(1, math.ceil(rate))
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        # The auth dependency runs on the event loop, but the limiter is not tied to it.
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take a token from ``key``'s bucket: 0.0 if granted, else seconds until one is."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            else:
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            # Within a billionth of a token is a whole one: float sums of elapsed times fall
            # that short of the exact refill.
            if bucket.tokens >= 1.0 - _EPSILON:
                bucket.tokens -= 1.0
                return 0.0
            return max(_EPSILON, 1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """Whole seconds, rounded up: a client that waits this long finds a token."""
        return str(max(1, math.ceil(wait_s)))
