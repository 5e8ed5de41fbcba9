"""uvicorn's HTTP/1.1 protocol with deadlines for slow clients and a cap on connections.

uvicorn waits for a request's headers and body as long as the client takes: a connection that
sends a byte a second holds its socket, its file descriptor and its buffers indefinitely, and
enough of them (≈ 18,000 were measured) exhaust the open-file limit, after which ``accept()``
fails for everyone. This subclass of uvicorn's h11 protocol (the one uvicorn runs when
httptools is not installed, as in ``requirements/serve.txt``) adds, per connection:

- a header deadline: from the connection's opening, or from the first byte of a later request
  on it, the request line and headers must be complete within ``header_timeout_s``, else the
  connection is closed without an answer (there is no request to answer);
- body progress: while a body is being received, each ``body_timeout_s`` must bring at least
  :data:`MIN_BODY_PROGRESS` bytes (or the body's end), else 408 problem+json and close. A
  window in which the service itself stopped reading (flow control paused the socket because
  the app had not consumed what arrived, or the client waits for ``100 Continue``) does not
  count against the client;
- a cap: past ``max_connections`` open connections a new one is closed at once, before it can
  hold anything, so descriptors stay below the process's limit.

Idle keep-alive connections are uvicorn's own ``timeout_keep_alive``. Each close is counted in
``retrieval_connections_closed_total{reason}`` and logged through an :class:`EventLogSummary`:
one line per reason per interval, however many connections.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.event_log_summary import EventLogSummary
from app.metrics import ServiceMetrics
from app.problem import PROBLEM_JSON

# Below this a body is not advancing: 1 KiB per body_timeout_s (≈ 100 B/s at the default 10 s)
# still serves the worst mobile link, while a byte a second is cut off.
MIN_BODY_PROGRESS = 1024


@dataclass
class ConnectionLimits:
    """What every connection of one server shares: the deadlines, the cap, where closes go."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    events: EventLogSummary
    metrics: ServiceMetrics | None = None

    def closed(self, reason: str, peer: tuple[str, int] | None) -> None:
        if self.metrics is not None:
            self.metrics.connections_closed.labels(reason=reason).inc()
        who = f"{peer[0]}:{peer[1]}" if peer else "unknown peer"
        self.events.record(
            reason, f"closed connections ({reason.replace('_', ' ')})", first_detail=who
        )

    def count_open(self, connections: int) -> None:
        if self.metrics is not None:
            self.metrics.open_connections.set(connections)


class _WatchedFlowControl(FlowControl):
    """uvicorn's flow control, remembering whether reading was paused since the last look."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self.paused_since_look = False

    def pause_reading(self) -> None:
        self.paused_since_look = True
        super().pause_reading()

    def look(self) -> bool:
        paused = self.paused_since_look or self.read_paused
        self.paused_since_look = False
        return paused


class SlowClientProtocol(H11Protocol):
    """Use :meth:`with_limits` for a subclass bound to one server's limits."""

    limits: ClassVar[ConnectionLimits]

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[SlowClientProtocol]:
        # uvicorn builds one protocol object per connection from a class and its own keyword
        # arguments: the limits travel as a class attribute.
        return type("BoundSlowClientProtocol", (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "headers", "body" or None (answering, or idle)
        self._window_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _WatchedFlowControl(transport)
        if len(self.connections) > self.limits.max_connections:
            self.limits.closed("over_connection_cap", self.client)
            transport.close()
            return
        self.limits.count_open(len(self.connections))
        self._start_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)
        self.limits.count_open(len(self.connections))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_deadline()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Part of the next request's head: its deadline runs from this first byte (the
            # idle timer uvicorn armed after the last answer was cancelled by it).
            if self._phase != "headers":
                self._start_headers()
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._start_body()
            else:
                self._window_bytes += len(data)
        else:  # the whole request is in; the app answers, then uvicorn's idle timer runs
            self._cancel_deadline()
            self._phase = None

    def _start_headers(self) -> None:
        self._cancel_deadline()
        self._phase = "headers"
        self._deadline = self.loop.call_later(self.limits.header_timeout_s, self._headers_late)

    def _start_body(self) -> None:
        self._cancel_deadline()
        self._phase = "body"
        self._window_bytes = 0
        self._deadline = self.loop.call_later(self.limits.body_timeout_s, self._check_body)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.limits.closed("header_timeout", self.client)
        self.transport.close()

    def _check_body(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        cycle = self.cycle
        assert isinstance(self.flow, _WatchedFlowControl)
        service_held = self.flow.look() or (
            cycle is not None and (bool(cycle.body) or cycle.waiting_for_100_continue)
        )
        if service_held or self._window_bytes >= MIN_BODY_PROGRESS:
            self._start_body()
            return
        self.limits.closed("body_timeout", self.client)
        self._answer_408()

    def _answer_408(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            body = json.dumps(
                {
                    "type": "about:blank",
                    "title": "Request Timeout",
                    "status": 408,
                    "detail": (
                        f"the request body did not advance by {MIN_BODY_PROGRESS} bytes in "
                        f"{self.limits.body_timeout_s:g} s; send it faster or retry"
                    ),
                }
            ).encode()
            headers = [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                for event in (
                    h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:
                pass  # h11 would not frame it (the connection's state moved on): just close
            # The app is waiting for the body: it reads a disconnect, and what it sends is
            # dropped (uvicorn's cycle discards sends once disconnected).
            cycle.response_started = True
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
