"""The bounded admission queue in front of inference: overload fails fast instead of queueing.

A search or an enrollment takes a slot once its body has arrived and holds it until its
inference is done (decode, the wait for the executor and the model call; with batching off,
until it is answered). With every slot taken, the next request is answered 503 with
``Retry-After`` at once rather than waiting behind the others: the queue, and with it the
latency of the requests it accepted, stays bounded. A request checks the queue twice: when its
headers arrive (full: its body is read, discarded, and it gets the 503 without any work done)
and when it asks for a slot with its body in hand (the queue may have filled meanwhile).

An admitted request is dropped before inference, and counted, if it waited past the queue
timeout (503) or its client went away (nobody left to answer). Waiting is the time since its
admission less the time spent decoding its own images: a large enrollment is not dropped for
the work it brought.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.metrics import ServiceMetrics
from app.retriever_errors import ClientGoneError, QueueFullError, QueueTimeoutError


class AdmissionTicket:
    """One admitted request's slot: how long it has waited, and whether its client is still
    there. ``client_gone`` is set from the event loop, read by whoever is about to run the
    model for it."""

    def __init__(self, control: AdmissionControl, admitted_at: float) -> None:
        self._control = control
        self.admitted_at = admitted_at  # time.monotonic()
        self._working_s = 0.0
        self.client_gone = threading.Event()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Time spent on the request's own work (decoding): not counted as waiting."""
        start = time.monotonic()
        try:
            yield
        finally:
            self._working_s += time.monotonic() - start

    def waited_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return now - self.admitted_at - self._working_s

    def check(self, now: float | None = None) -> None:
        """Raise (and count) the reason to drop this request instead of running it, if any."""
        if self.client_gone.is_set():
            self._control.count_rejection("client_gone")
            raise ClientGoneError("the client disconnected while its request waited")
        waited = self.waited_s(now)
        if waited > self._control.timeout_s:
            self._control.count_rejection("queue_timeout")
            raise QueueTimeoutError(
                f"the request waited {1000 * waited:.0f} ms for inference, longer than the queue "
                f"timeout ({1000 * self._control.timeout_s:.0f} ms): the service is overloaded; "
                "retry later"
            )


class AdmissionControl:
    def __init__(self, capacity: int, timeout_s: float, metrics: ServiceMetrics) -> None:
        self.capacity = capacity
        self.timeout_s = timeout_s
        self._metrics = metrics
        self._lock = threading.Lock()
        self._length = 0

    @property
    def length(self) -> int:
        return self._length

    def is_full(self) -> bool:
        return self._length >= self.capacity

    def refuse(self) -> QueueFullError:
        """The error (counted) for a request turned away because the queue is full."""
        self.count_rejection("queue_full")
        return QueueFullError(
            f"the service is at capacity ({self.capacity} requests waiting for inference); "
            "retry later"
        )

    @contextmanager
    def admit(self) -> Iterator[AdmissionTicket]:
        """Hold a slot for the block; QueueFullError at once when there is none."""
        with self._lock:
            if self._length >= self.capacity:
                raise self.refuse()
            self._length += 1
            self._metrics.admission_queue_length.set(self._length)
        try:
            yield AdmissionTicket(self, time.monotonic())
        finally:
            with self._lock:
                self._length -= 1
                self._metrics.admission_queue_length.set(self._length)

    def count_rejection(self, reason: str) -> None:
        self._metrics.admission_rejections.labels(reason=reason).inc()
