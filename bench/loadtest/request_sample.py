"""One request of a load-test run, as the generator saw it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic

import httpx
from typing_extensions import TypeVar

# What ``send`` sends with: httpx by default; the bench's lean client (bench/lean_client.py)
# for its own measurements. The load-test loops only pass it through.
ClientT = TypeVar("ClientT", default=httpx.AsyncClient)


@dataclass(frozen=True)
class Operation(Generic[ClientT]):
    """A request ready to send: ``send`` performs it and returns the HTTP status code.

    ``endpoint`` is the label results are grouped by (e.g. ``"POST /search"``). ``send``
    reports a failure without an answer as an ``httpx.HTTPError`` (``httpx.TimeoutException``
    for a timeout), whatever client it uses, so the loops classify every client's alike.
    """

    endpoint: str
    send: Callable[[ClientT], Awaitable[int]]

    async def outcome(self, client: ClientT) -> tuple[int | None, str | None]:
        """Send once: ``(status, None)`` for an answer, ``(None, error)`` without one —
        ``"timeout"`` or the httpx error's class name. The one classification every loop uses."""
        try:
            return await self.send(client), None
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as exc:
            return None, type(exc).__name__


@dataclass(frozen=True)
class RequestSample:
    """Times are seconds from the start of the run (``time.monotonic`` based).

    ``scheduled_s``: when the request was due. ``sent_s``: when it actually left (``None``:
    dropped because the in-flight cap was reached). ``latency_s``: completion minus the *due*
    time for open-loop runs (minus the send time for closed-loop runs, which have no schedule;
    there both are equal); ``None`` when dropped. ``status``: HTTP status, ``None`` when there
    was no answer (drop, timeout, connection error; ``error`` then says which).
    """

    endpoint: str
    scheduled_s: float
    sent_s: float | None
    latency_s: float | None
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def dropped(self) -> bool:
        return self.sent_s is None
