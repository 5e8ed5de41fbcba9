"""The ``after=`` query parameter of every read that ranks items (``/search``, neighbours):
answer only once this replica's index reflects a given write (``app/write_position.py``)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import Query

from app.retriever import Retriever
from app.service_state import ServiceState
from app.settings import Settings
from app.write_position import TOKEN_PATTERN, wait_applied


def after_query(settings: Settings) -> Any:
    """The ``after`` parameter (``Annotated[str | None, after_query(settings)]``), its timeout
    in the docs."""
    return Query(
        pattern=TOKEN_PATTERN,
        description="A write's position (`X-Retrieval-Position`): answer only once this "
        "replica has applied that write (503 with `Retry-After` if it has not within "
        f"{settings.read_after_timeout_ms} ms).",
    )


async def wait_for_position(state: ServiceState, retriever: Retriever, after: str | None) -> None:
    """Return at once without ``after``, else once the write at ``after`` is applied here
    (``PositionNotAppliedError`` after the setting's timeout, ``InvalidPositionError`` for a
    position no write has)."""
    if after is None:
        return
    # Other replicas write only with a change feed to follow.
    last_version = (
        None
        if state.follower is None
        else partial(state.store_lane.run, retriever.store.last_version)
    )
    timeout_s = state.settings.read_after_timeout_ms / 1000
    await wait_applied(retriever.applier, after, timeout_s, last_version)
