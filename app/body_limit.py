"""Cap request bodies without holding them in memory, and make sure the client sees the 413.

A server that answers 413 and closes while the client is still sending makes most clients fail
with a broken pipe instead of reading the answer. So an oversized body is read to its end and
discarded (never stored), up to ``drain_limit`` bytes; beyond that the connection is dropped.

A client that sent ``Expect: 100-continue`` with an oversized Content-Length is waiting for leave
to send the body. It gets the 413 at once instead: the server only sends ``100 Continue`` on the
app's first ``receive()``, so answering before that spares the client the upload altogether.

With a :class:`BytesInFlight` budget, a request is charged for the body bytes it holds in
memory: while the body arrives, what has arrived up to the spool threshold (1 MiB; a slow client
that sent ten bytes holds ten, however large a Content-Length it declared, so slow clients
cannot lock everyone out of the budget), and from its last chunk on the whole body, which the
app reads back from the spool to work on, until it is answered. A charge that finds no room
within a short wait is a 503 with ``Retry-After`` (the rest of the body drained as for a 413).
Charging whole bodies only once they are complete means requests already being worked on are
never starved by new ones: a burst of large uploads is served a budget's worth at a time.
A client that goes away mid-body is nobody to answer: not an error to log.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bytes_in_flight import BytesInFlight, BytesInFlightFullError
from app.problem import CLIENT_CLOSED_REQUEST, PROBLEM_JSON, problem_response
from app.request_body import drain_body, expects_continue

# Starlette's form parser keeps up to this much of a file part in memory, then spools to disk.
IN_MEMORY_WHILE_RECEIVING = 1024 * 1024


class BodyTooLargeError(Exception):
    """Raised inside the app's ``receive`` once the body passed the limit (already drained)."""


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes`` (declared or actually sent)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        drain_limit: int | None = None,
        bytes_in_flight: BytesInFlight | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Reading on past the limit costs bandwidth, not memory; cap it all the same.
        self.drain_limit = drain_limit if drain_limit is not None else 8 * max_bytes
        self.budget = bytes_in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            if not expects_continue(scope) and declared <= self.drain_limit:
                await drain_body(receive, self.drain_limit)
            await self._send_413(send)
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        charged = 0
        body_done = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, charged, body_done
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    if not body_done:
                        await drain_body(receive, self.drain_limit - received)
                    raise BodyTooLargeError
                if self.budget is not None:
                    # In memory while it arrives: what was sent, up to the spool threshold
                    # (the form parser writes the rest of a part to disk). Once it is all in,
                    # the app reads it back to work on it: the whole body.
                    held = received if body_done else min(received, IN_MEMORY_WHILE_RECEIVING)
                    held = min(held, self.budget.capacity)
                    if held > charged:
                        charged += await self.budget.reserve(held - charged)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            if not response_started:
                await self._send_413(send)
        except ClientDisconnect:
            if not response_started:
                # Nobody reads it; the request metrics record it as the client's doing.
                await send_status_only(send, CLIENT_CLOSED_REQUEST)
        except Exception as exc:
            # Frameworks may wrap the error raised from receive() (e.g. a form parser).
            cause = _cause(exc)
            if cause is None or response_started:
                raise
            if isinstance(cause, BytesInFlightFullError):
                await self._send_503(scope, receive, send, cause, drain=not body_done)
            elif isinstance(cause, ClientDisconnect):
                await send_status_only(send, CLIENT_CLOSED_REQUEST)
            else:
                await self._send_413(send)
        finally:
            if self.budget is not None:
                self.budget.release(charged)

    async def _send_503(
        self, scope: Scope, receive: Receive, send: Send, exc: Exception, *, drain: bool
    ) -> None:
        if drain:
            await drain_body(receive, self.drain_limit)
        await problem_response(503, str(exc), retry_after_s=1)(scope, receive, send)

    async def _send_413(self, send: Send) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": HTTPStatus(413).phrase,
                "status": 413,
                "detail": f"request body is larger than {self.max_bytes} bytes",
                "max_request_bytes": self.max_bytes,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def send_status_only(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


_OURS = (BodyTooLargeError, BytesInFlightFullError, ClientDisconnect)


def _cause(exc: BaseException) -> BaseException | None:
    """The error raised from our ``receive`` (or the client's leaving) behind ``exc``, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _OURS):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
