"""BodyLimitMiddleware on its own, around a tiny ASGI app, driven message by message (no server):
what reaches the app, what the client is sent, and how much of an oversized body is read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.body_limit import BodyLimitMiddleware

LIMIT = 1000
CHUNK = 100


@dataclass
class Exchange:
    """One request through an ASGI app: the messages it sent and what it read of the body."""

    sent: list[Message] = field(default_factory=list)
    received: int = 0  # messages the app (or the middleware) took from the client

    @property
    def status(self) -> int:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        status: int = start["status"]
        return status

    @property
    def headers(self) -> dict[bytes, bytes]:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(start["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body and sends it back, the way a route reads an upload."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-echo", b"1")]})
    await send({"type": "http.response.body", "body": body})


def chunks(size: int) -> list[bytes]:
    data = bytes(i % 251 for i in range(size))
    return [data[i : i + CHUNK] for i in range(0, size, CHUNK)]


def http_scope(headers: Sequence[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": list(headers),
    }


def run(
    app: ASGIApp,
    body: Sequence[bytes],
    *,
    declare_length: bool = True,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> Exchange:
    """Send ``body`` in chunks to ``app`` (the middleware around ``echo``, or ``echo`` alone)."""
    exchange = Exchange()
    headers = list(extra_headers)
    if declare_length:
        headers.append((b"content-length", str(sum(map(len, body))).encode()))
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(body) - 1}
        for i, chunk in enumerate(body or [b""])
    ]

    async def receive() -> Message:
        if exchange.received < len(pending):
            exchange.received += 1
            return pending[exchange.received - 1]
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        exchange.sent.append(message)

    anyio.run(app, http_scope(headers), receive, send)
    return exchange


def limited(app: ASGIApp, calls: list[int], **kwargs: int) -> BodyLimitMiddleware:
    """``app`` behind the middleware; ``calls`` gets one entry each time the app is reached."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(1)
        await app(scope, receive, send)

    return BodyLimitMiddleware(counted, max_bytes=LIMIT, **kwargs)


def assert_413(exchange: Exchange) -> None:
    assert exchange.status == 413
    assert exchange.headers[b"content-type"] == b"application/problem+json"
    assert exchange.headers[b"content-length"] == str(len(exchange.body)).encode()
    # The client may still be sending: it must not reuse the connection.
    assert exchange.headers[b"connection"] == b"close"
    problem = json.loads(exchange.body)
    assert problem["status"] == 413 and problem["max_request_bytes"] == LIMIT
    assert str(LIMIT) in problem["detail"] and problem["title"] == "Request Entity Too Large"
    # Exactly one response: never a second start after the app's own.
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]


@pytest.mark.parametrize("declare_length", [True, False])
@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_a_body_within_the_limit_passes_through_unchanged(size: int, declare_length: bool) -> None:
    body = chunks(size)
    calls: list[int] = []
    through = run(limited(echo, calls), body, declare_length=declare_length)
    bare = run(echo, body, declare_length=declare_length)
    assert through.sent == bare.sent and through.body == b"".join(body)
    assert through.received == bare.received == max(len(body), 1) and calls == [1]


def test_a_declared_length_over_the_limit_is_413_before_the_app_runs() -> None:
    body = chunks(LIMIT + 1)
    calls: list[int] = []
    exchange = run(limited(echo, calls), body)
    assert_413(exchange)
    assert calls == []
    # Read to its end and dropped, so that the client gets to read the answer.
    assert exchange.received == len(body)


def test_a_declared_length_past_the_drain_limit_is_not_read_at_all() -> None:
    body = chunks(3 * LIMIT)
    calls: list[int] = []
    exchange = run(limited(echo, calls, drain_limit=2 * LIMIT), body)
    assert_413(exchange)
    assert calls == [] and exchange.received == 0


def test_expect_100_continue_gets_the_413_before_any_body_is_asked_for() -> None:
    # The server sends "100 Continue" on the app's first receive(): there must be none.
    body = chunks(2 * LIMIT)
    calls: list[int] = []
    exchange = run(limited(echo, calls), body, extra_headers=[(b"expect", b"100-continue")])
    assert_413(exchange)
    assert calls == [] and exchange.received == 0


def test_an_undeclared_body_over_the_limit_is_413_once_it_passes_the_limit() -> None:
    body = chunks(3 * LIMIT)
    calls: list[int] = []
    exchange = run(limited(echo, calls), body, declare_length=False)
    assert_413(exchange)
    assert calls == [1]
    # The rest is drained too (within 8x the limit by default): every chunk was taken.
    assert exchange.received == len(body)


def test_an_undeclared_body_stops_being_read_at_the_drain_limit() -> None:
    body = chunks(10 * LIMIT)
    calls: list[int] = []
    exchange = run(limited(echo, calls, drain_limit=3 * LIMIT), body, declare_length=False)
    assert_413(exchange)
    # Past the drain limit the middleware stops reading: the server will drop the connection.
    assert 3 * LIMIT // CHUNK <= exchange.received < len(body)


def test_a_framework_wrapping_the_limit_error_still_gives_413() -> None:
    """A form parser may catch the error raised from receive() and raise its own from it."""

    async def parser(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await echo(scope, receive, send)
        except Exception as exc:
            raise RuntimeError("multipart parsing failed") from exc

    calls: list[int] = []
    assert_413(run(limited(parser, calls), chunks(2 * LIMIT), declare_length=False))
    assert calls == [1]


def test_an_app_that_already_answered_keeps_its_answer() -> None:
    """A response that has started cannot be replaced by a 413; nothing more is sent."""

    async def answers_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"early", "more_body": True})
        while (await receive()).get("more_body", False):
            pass

    calls: list[int] = []
    exchange = run(limited(answers_first, calls), chunks(2 * LIMIT), declare_length=False)
    assert exchange.status == 202 and exchange.body == b"early" and calls == [1]
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]


def test_other_errors_of_the_app_are_not_turned_into_413() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise ValueError("a bug in the route")

    calls: list[int] = []
    with pytest.raises(ValueError, match="a bug in the route"):
        run(limited(broken, calls), chunks(LIMIT // 2))


def test_non_http_scopes_pass_through() -> None:
    seen: list[Scope] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def nothing() -> Message:
        return {"type": "lifespan.startup"}

    async def discard(message: Message) -> None:
        pass

    scope: Scope = {"type": "lifespan", "headers": [(b"content-length", b"99999999")]}
    anyio.run(BodyLimitMiddleware(lifespan_app, max_bytes=LIMIT), scope, nothing, discard)
    assert seen == [scope]
