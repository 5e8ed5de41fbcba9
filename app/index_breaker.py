"""The store's circuit breaker (``app/circuit_breaker.py``) in front of a shared index (Milvus).

Why: the index of a replica's own memory cannot be down, Milvus can. Once it has failed
``failures`` calls in a row (``RETRIEVAL_MILVUS_BREAKER_FAILURES``, default
``INDEX_BREAKER_FAILURES``; searches, writes' index updates and the reconciler's retries all
count), the service *knows* it is down: a write is then refused with 503 before its store
commit (``refuse_writes_if_open``), instead of committing and answering ``index_pending``, and
searches and the index's other calls are refused at once rather than each waiting for Milvus's
timeout. After ``cooldown_s`` (``RETRIEVAL_MILVUS_BREAKER_COOLDOWN_S``) one call is let through
as the probe (a search, a write's index update, or the reconciler's retry of a pending item);
its success closes the breaker.

Every refusal and every Milvus failure is an ``IndexUnavailableError``: 503 problem+json with
``Retry-After`` (the cooldown left for a refusal), never the store's text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.circuit_breaker import BreakerState, CircuitBreaker, StoreBreakerOpenError
from app.problem import problem_response
from index.index_errors import IndexUnavailableError

log = logging.getLogger(__name__)

# Three failed calls in a row: one timeout can be a blip, three are an outage. The cooldown is
# short because Milvus restarts in seconds and refused writes are the cost of a long one.
INDEX_BREAKER_FAILURES = 3
INDEX_BREAKER_COOLDOWN_S = 2.0
# A Milvus failure without a breaker's cooldown to quote: retry soon.
INDEX_RETRY_AFTER_S = 2

PUBLIC_DETAIL = "the centroid index (Milvus) is unreachable; retry later"


class IndexBreakerOpenError(IndexUnavailableError):
    """Refused without trying the index, which kept failing (503 with ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IndexBreaker:
    def __init__(
        self,
        failures: int = INDEX_BREAKER_FAILURES,
        cooldown_s: float = INDEX_BREAKER_COOLDOWN_S,
    ) -> None:
        self._breaker = CircuitBreaker(failures, cooldown_s, name="index")

    @property
    def state(self) -> BreakerState:
        return self._breaker.state

    def refuse_writes_if_open(self) -> None:
        """Before a store commit: ``IndexBreakerOpenError`` while the breaker is open (Milvus
        known down). Half-open lets the write through: its index update may be the probe."""
        if self._breaker.state is BreakerState.OPEN:
            self._admit()  # raises, with the cooldown left

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around one index operation: refused at once while open; an
        ``IndexUnavailableError`` inside counts as a failure, a return as a success."""
        probe = self._admit()
        try:
            yield
        except IndexUnavailableError:
            self._breaker.failed(probe)
            raise
        except BaseException:
            # Anything else (a store read inside, a bad row) says nothing about the index.
            self._breaker.abandoned(probe)
            raise
        self._breaker.succeeded(probe)

    def _admit(self) -> bool:
        try:
            return self._breaker.admit()
        except StoreBreakerOpenError as exc:
            raise IndexBreakerOpenError(
                "index circuit open: refused without trying the index",
                retry_after_s=exc.retry_after_s,
            ) from None


def install_index_handlers(app: FastAPI) -> None:
    """An index that does not answer is a 503 (the store's text and Milvus's address stay in
    the log)."""

    async def on_unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, IndexUnavailableError)
        if isinstance(exc, IndexBreakerOpenError):
            retry_after_s = exc.retry_after_s  # not logged: the transitions are
        else:
            retry_after_s = INDEX_RETRY_AFTER_S
            log.warning("index unavailable on %s: %s", request.url.path, exc)
        return problem_response(503, PUBLIC_DETAIL, retry_after_s=retry_after_s)

    app.add_exception_handler(IndexUnavailableError, on_unavailable)
