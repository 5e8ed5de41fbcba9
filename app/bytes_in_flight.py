"""A budget of request body bytes being received or processed at once, across all requests.

Every upload costs memory while it is read and worked on (its bytes read back from the spool,
the decoded image), whatever the connection and admission limits say: 100 concurrent 30 MiB
uploads reached 3.5 GB. The body-limit middleware charges each request for the body bytes it
holds (see :mod:`app.body_limit` for what counts when) and gives them back when it is answered.
With the budget spent, a charge waits a little for others to finish (uploads come in bursts),
then the request is turned away with 503 and ``Retry-After``. One request larger than the whole
budget is charged all of it: it runs alone rather than never.

Used from event loops only, but from more than one in tests (each test client runs its own):
hence a thread lock and a short polling wait rather than loop-bound futures.
"""

from __future__ import annotations

import asyncio
import threading
import time

from app.metrics import ServiceMetrics

WAIT_S = 1.0
_POLL_S = 0.02


class BytesInFlightFullError(RuntimeError):
    """No room in the budget within the wait: 503, retry later."""


class BytesInFlight:
    def __init__(
        self, capacity: int, *, metrics: ServiceMetrics | None = None, wait_s: float = WAIT_S
    ) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self._metrics = metrics
        self._lock = threading.Lock()
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    def _try_take(self, size: int) -> bool:
        with self._lock:
            if self._used + size > self.capacity:
                return False
            self._used += size
            self._publish()
            return True

    async def reserve(self, size: int) -> int:
        """Take ``size`` bytes (at most the whole budget), waiting up to ``wait_s``; the amount
        taken, to give back with :meth:`release`."""
        size = min(size, self.capacity)
        if size <= 0:
            return 0
        deadline = time.monotonic() + self.wait_s
        while not self._try_take(size):
            if time.monotonic() >= deadline:
                if self._metrics is not None:
                    self._metrics.bytes_in_flight_rejections.inc()
                raise BytesInFlightFullError(
                    f"the service is receiving and processing as many request bytes as it "
                    f"takes at once ({self.capacity} bytes); retry later"
                )
            await asyncio.sleep(_POLL_S)
        return size

    def release(self, size: int) -> None:
        if size <= 0:
            return
        with self._lock:
            self._used -= size
            self._publish()

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.bytes_in_flight.set(self._used)
