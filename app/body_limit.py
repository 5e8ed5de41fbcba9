"""Cap request bodies without holding them in memory, and make sure the client sees the 413.

A server that answers 413 and closes while the client is still sending makes most clients fail
with a broken pipe instead of reading the answer. So an oversized body is read to its end and
discarded (never stored), up to ``drain_limit`` bytes; beyond that the connection is dropped.

A client that sent ``Expect: 100-continue`` with an oversized Content-Length is waiting for leave
to send the body. It gets the 413 at once instead: the server only sends ``100 Continue`` on the
app's first ``receive()``, so answering before that spares the client the upload altogether.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problem import PROBLEM_JSON
from app.request_body import drain_body, expects_continue


class BodyTooLargeError(Exception):
    """Raised inside the app's ``receive`` once the body passed the limit (already drained)."""


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes`` (declared or actually sent)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, drain_limit: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Reading on past the limit costs bandwidth, not memory; cap it all the same.
        self.drain_limit = drain_limit if drain_limit is not None else 8 * max_bytes

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

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await drain_body(receive, self.drain_limit - received)
                    raise BodyTooLargeError
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
        except Exception as exc:
            # Frameworks may wrap the error raised from receive() (e.g. a form parser).
            if _caused_by_body_limit(exc) and not response_started:
                await self._send_413(send)
            else:
                raise

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


def _caused_by_body_limit(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BodyTooLargeError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
