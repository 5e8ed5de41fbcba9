"""The store's own lane: store I/O runs on a bounded set of threads apart from the worker threads,
each operation within a deadline.

Decoding, index searches and the service's other work run on the worker threads
(``RETRIEVAL_WORKER_THREADS``). Calls that go to the store — enrollments' commits, item reads and
listings, deletions, readiness and ``/info`` — run here instead, on ``slots`` threads of their
own, with at most ``queue`` more waiting; past that a request is answered 503 at once. So a slow
or stalled store ties up this lane's threads and nothing else: searches, which need no store,
keep their threads and keep being answered.

Every operation has a deadline from its arrival in the lane, covering the wait for a thread and
all of the operation's round trips and retries (``RETRIEVAL_STORE_DEADLINE_MS`` for reads,
``RETRIEVAL_STORE_WRITE_DEADLINE_MS`` for writes, whose blobs' fsyncs on a loaded disk take
longer and whose unknown outcome costs a client retry and a reconcile): past it the
request is answered 503 and the operation, if it has started, is left to finish on its thread
(a thread cannot be interrupted; the lane's threads bound how many such operations there are).
A read past its deadline is simply unavailable. A write past its deadline that had already
started may still commit: its answer says the outcome is unknown, and the item is marked for
the index reconciler, which re-reads it from the store — the write's own thread also brings the
index in line when it does finish. A write that never started applied nothing.

Counted on the event loop only (``run`` is awaited there), so no lock is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from app.circuit_breaker import CircuitBreaker, StoreBreakerOpenError
from app.metrics import ServiceMetrics
from app.retriever_errors import QueueFullError
from store.errors import StoreOutcomeUnknownError, StoreUnavailableError

T = TypeVar("T")


class StoreBusyError(QueueFullError):
    """Every store slot is taken and the lane's queue is full: 503 at once, retry later."""


class StoreDeadlineError(StoreUnavailableError):
    """The store did not answer within the deadline (503); nothing is known to be applied."""

    public_detail = "the store did not answer in time; retry later"


class StoreLane:
    def __init__(
        self,
        slots: int,
        queue: int,
        deadline_s: float,
        metrics: ServiceMetrics,
        breaker: CircuitBreaker | None = None,
        write_deadline_s: float | None = None,
    ) -> None:
        """``deadline_s``: a read's deadline; ``write_deadline_s``: a write's (None: the same).
        ``breaker``: None, no breaker (every call is tried)."""
        write_deadline_s = deadline_s if write_deadline_s is None else write_deadline_s
        if slots < 1 or queue < 0 or deadline_s <= 0 or write_deadline_s <= 0:
            raise ValueError("need slots >= 1, queue >= 0 and deadlines > 0")
        self.slots = slots
        self.queue = queue
        self.deadline_s = deadline_s
        self.write_deadline_s = write_deadline_s
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="store-lane")
        self._in_lane = 0  # requests running or waiting here (not operations left to finish)
        self._metrics = metrics
        self._breaker = breaker
        if breaker is not None:
            # Read at scrape time: open turns half-open by the clock alone, with no call.
            metrics.store_breaker_state.set_function(lambda: breaker.state.value)

    @property
    def breaker_state(self) -> str:
        """``closed``, ``half-open``, ``open``, or ``disabled`` (no breaker)."""
        return "disabled" if self._breaker is None else self._breaker.state.label

    @property
    def in_lane(self) -> int:
        return self._in_lane

    async def run(self, fn: Callable[..., T], *args: object, deadline_s: float | None = None) -> T:
        """A read, ``fn(*args)``, on one of the lane's threads: ``StoreBusyError`` if the lane is
        full, ``StoreDeadlineError`` past the deadline (``deadline_s``, at most the lane's)."""
        deadline = self.deadline_s if deadline_s is None else min(deadline_s, self.deadline_s)
        return await self._run(partial(fn, *args), deadline, on_started_late=None)

    async def run_write(
        self, item_id: str, mark: Callable[[str], None], fn: Callable[..., T], *args: object
    ) -> T:
        """A write to ``item_id``, ``fn(*args)``: as ``run``, but past the deadline once started
        its outcome is unknown (``StoreOutcomeUnknownError``) and ``mark(item_id)`` is called
        so that the index is re-read from the store. Within the write deadline."""
        return await self._run(
            partial(fn, *args), self.write_deadline_s, on_started_late=lambda: mark(item_id)
        )

    async def _run(
        self,
        call: Callable[[], T],
        deadline: float,
        on_started_late: Callable[[], None] | None,
    ) -> T:
        breaker = self._breaker
        if breaker is None:
            return await self._submit(call, deadline, on_started_late)
        try:
            probe = breaker.admit()
        except StoreBreakerOpenError:
            self._metrics.store_breaker_refusals.inc()
            raise
        try:
            answer = await self._submit(call, deadline, on_started_late)
        except StoreBusyError:
            # Turned away by the lane itself: the store was not asked.
            breaker.abandoned(probe)
            raise
        except StoreUnavailableError:
            breaker.failed(probe)
            raise
        except Exception:
            # The store answered, with an error of the request's (an unknown item, say).
            breaker.succeeded(probe)
            raise
        except BaseException:
            breaker.abandoned(probe)  # cancelled: nothing learned about the store
            raise
        breaker.succeeded(probe)
        return answer

    async def _submit(
        self,
        call: Callable[[], T],
        deadline: float,
        on_started_late: Callable[[], None] | None,
    ) -> T:
        if self._in_lane >= self.slots + self.queue:
            self._metrics.store_lane_rejections.inc()
            raise StoreBusyError(
                f"the store is busy ({self._in_lane} store operations running or waiting); "
                "retry later"
            )
        self._in_lane += 1
        self._metrics.store_lane_requests.set(self._in_lane)
        job = self._threads.submit(call)
        answer = asyncio.wrap_future(job)
        # An operation left to finish may fail later, with nobody awaiting it: its error is
        # taken here (the store and the reconciler have dealt with it) instead of logged as
        # never retrieved.
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(answer), deadline)
        except TimeoutError:
            self._metrics.store_deadline_exceeded.inc()
            if job.cancel() or on_started_late is None:
                # Never started (so nothing applied), or a read: the store is just unavailable.
                raise StoreDeadlineError(
                    f"store operation not answered within {deadline:.2f} s"
                ) from None
            on_started_late()
            raise StoreOutcomeUnknownError(
                f"store write not confirmed within {deadline:.2f} s; left to finish"
            ) from None
        finally:
            self._in_lane -= 1
            self._metrics.store_lane_requests.set(self._in_lane)

    def close(self) -> None:
        """Stop taking operations; those running finish on their threads."""
        self._threads.shutdown(wait=False, cancel_futures=True)
