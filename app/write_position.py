"""Read-your-writes through any replica: a write's position, and waiting for it.

Every 2xx write answers ``X-Retrieval-Position: <token>`` (and a ``position`` field in JSON
bodies): the item and the version of the state that write left (``store/item_versions.py``). A
search sent with ``after=<token>`` to any replica waits, up to ``read_after_timeout_ms``, until
that replica's index reflects that state or a newer one of the item, else answers 503 with
``Retry-After`` — so a client that writes through one replica and reads through another sees
its write. On SQLite (one process) a replica always has its own writes already, so a position it
has not applied is refused at once (422), as is, on Redis, one past the store's write counter.

The token is ``<version>.<item id>``: opaque to clients, readable in logs.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from app.index_applier import IndexApplier
from app.retriever_errors import InvalidPositionError, PositionNotAppliedError
from store.records import ItemState

HEADER = "X-Retrieval-Position"
TOKEN_PATTERN = r"^[0-9]{1,19}\.[A-Za-z0-9._:-]{1,128}$"
POLL_S = 0.005


def position_token(state: ItemState) -> str:
    return f"{state.version}.{state.item_id}"


def parse_position(token: str) -> tuple[int, str]:
    """``(version, item_id)`` of a token; ``InvalidPositionError`` if it is not one."""
    if not re.fullmatch(TOKEN_PATTERN, token):
        raise InvalidPositionError(f"invalid position {token!r}: use a write's {HEADER}")
    version, _, item_id = token.partition(".")
    return int(version), item_id


async def wait_applied(
    applier: IndexApplier,
    token: str,
    timeout_s: float,
    last_version: Callable[[], Awaitable[int]] | None,
) -> None:
    """Return once the index reflects the write at ``token`` (or a newer state of its item);
    ``PositionNotAppliedError`` after ``timeout_s``.

    ``last_version`` reads the store's write counter when other replicas write too (None: this
    process makes every write, so a position it has not applied was never a write's): a token
    past it is no write's position, refused at once rather than waited for.
    """
    version, item_id = parse_position(token)
    if applier.version_of(item_id) >= version:
        return
    if last_version is None or await last_version() < version:
        raise InvalidPositionError(f"no write has position {token}")
    deadline = time.monotonic() + timeout_s
    while applier.version_of(item_id) < version:
        if time.monotonic() >= deadline:
            raise PositionNotAppliedError(
                f"this replica has not applied position {token} within {timeout_s:g} s; "
                "retry (or send the search to the replica that took the write)"
            )
        await asyncio.sleep(POLL_S)
