"""A circuit breaker in front of the store lane: a store that keeps failing is not tried again by
every request, each holding a lane thread until its deadline, but refused at once for a while.

Closed: every call goes through; ``failures`` consecutive store failures (the store unreachable,
a deadline expired: ``StoreUnavailableError``) open it. An answer of any other kind — an unknown
item, a bad argument — is the store answering, and counts as a success. Open: every call is
refused at once (``StoreBreakerOpenError``, a 503 whose ``Retry-After`` is the cooldown left)
until ``cooldown_s`` has passed since it opened. Half-open: the first call after that is let
through as the one probe, the others refused meanwhile; the probe's success closes the breaker,
its failure opens it for another cooldown. A probe that ends with neither (cancelled) lets the
next call be the probe.

Thread-safe (a lock): the lane decides on the event loop, ``/metrics`` reads the state from a
scrape thread.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.problem import problem_response
from store.errors import StoreUnavailableError

log = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    """The value is the ``retrieval_store_breaker_state`` gauge's (a metrics contract)."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class StoreBreakerOpenError(StoreUnavailableError):
    """Refused without trying the store, which kept failing (HTTP 503 with ``Retry-After``)."""

    public_detail = (
        "the store kept failing: requests that need it are refused for a few seconds without "
        "trying it; retry later"
    )

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # whole seconds, >= 1


class CircuitBreaker:
    def __init__(
        self,
        failures: int,
        cooldown_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "store",
    ) -> None:
        """``failures`` >= 1 consecutive store failures open it for ``cooldown_s`` > 0 seconds
        of ``clock()`` (any monotonic seconds; injected so tests need no sleeps). ``name`` is
        what the log lines call the guarded backend (the index's breaker reuses this one)."""
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("need failures >= 1 and a cooldown > 0")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.name = name
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None  # None: closed
        self._probing = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() >= self._opened_at + self.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def admit(self) -> bool:
        """Let a call through: True if it is the half-open probe (its outcome decides), False
        for an ordinary call. Raises ``StoreBreakerOpenError`` when it is refused."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return False
            if state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            assert self._opened_at is not None
            left = self._opened_at + self.cooldown_s - self._clock()
        # A probe in flight leaves no cooldown: "soon", one second.
        raise StoreBreakerOpenError(
            f"store circuit {state.label}: refused without trying the store",
            retry_after_s=max(1, math.ceil(left)),
        )

    def succeeded(self, probe: bool) -> None:
        """The store answered the call ``admit`` returned ``probe`` for."""
        with self._lock:
            if probe:
                self._probing = False
                self._opened_at = None
                log.info("%s circuit closed: the probe succeeded", self.name)
            if self._opened_at is None:
                self._consecutive = 0
            # A call let through before it opened says nothing the probe will not.

    def failed(self, probe: bool) -> None:
        """The store failed the call (unreachable, or past its deadline)."""
        with self._lock:
            if probe:
                self._probing = False
                self._opened_at = self._clock()
                log.warning("%s circuit re-opened: the probe failed", self.name)
                return
            if self._opened_at is not None:
                return  # already open: a late failure must not stretch the cooldown
            self._consecutive += 1
            if self._consecutive >= self.failures:
                self._opened_at = self._clock()
                self._consecutive = 0
                log.warning(
                    "%s circuit opened after %d consecutive failures; refusing its operations "
                    "for %g s",
                    self.name,
                    self.failures,
                    self.cooldown_s,
                )

    def abandoned(self, probe: bool) -> None:
        """The call ended without an answer either way (cancelled): nothing learned."""
        if probe:
            with self._lock:
                self._probing = False


def install_breaker_handlers(app: FastAPI) -> None:
    """Answer a refusal as the lane answers an unavailable store (503), but with the cooldown
    left as ``Retry-After`` (more specific than the ``StoreUnavailableError`` handler)."""

    async def on_open(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreBreakerOpenError)
        # Not logged per refusal: the transitions are, and a refusal storm would flood the log.
        return problem_response(
            503, StoreBreakerOpenError.public_detail, retry_after_s=exc.retry_after_s
        )

    app.add_exception_handler(StoreBreakerOpenError, on_open)
