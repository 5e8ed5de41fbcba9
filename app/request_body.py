"""A request body's checks before it is read: its media type, and for answers given early,
the body read to its end and dropped, or not read at all.

A server that answers early and closes while the client is still sending makes most clients
fail with a broken pipe instead of reading the answer; reading the rest (never keeping it) lets
them read it. A client that sent ``Expect: 100-continue`` has not sent its body yet: it is
answered without reading, which spares it the upload.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive, Scope

from app.retriever_errors import UnsupportedMediaTypeError


def require_media_type(request: Request, media_type: str) -> None:
    """``UnsupportedMediaTypeError`` (415) unless the body's content type is ``media_type``
    (parameters such as ``charset`` allowed, case ignored)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != media_type:
        raise UnsupportedMediaTypeError(
            f"expected {media_type}, got {content_type or 'no content type'!r}"
        )


def expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.strip().lower() == b"100-continue"
        for name, value in scope.get("headers", ())
    )


async def drain_body(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body, at most ``budget`` bytes."""
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def drain_before_refusing(scope: Scope, receive: Receive, budget: int) -> None:
    """Before an early refusal: read and drop the body (at most ``budget`` bytes), unless the
    client is waiting for ``100 Continue`` and so has sent none of it."""
    if not expects_continue(scope):
        await drain_body(receive, budget)
