"""A request body read to its end and dropped, or not read at all: for answers given early.

A server that answers early and closes while the client is still sending makes most clients
fail with a broken pipe instead of reading the answer; reading the rest (never keeping it) lets
them read it. A client that sent ``Expect: 100-continue`` has not sent its body yet: it is
answered without reading, which spares it the upload.
"""

from __future__ import annotations

from starlette.types import Receive, Scope


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
