"""Closed-loop load: ``users`` clients, each sending its next request as soon as the previous
one is answered. Right for finding saturation throughput (the benchmark); wrong for latency
under a given load, since it sends less exactly when the server is slow (see open_loop.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from bench.loadtest.request_sample import ClientT, Operation, RequestSample


async def run_closed_loop(
    client: ClientT,
    operation_at: Callable[[int], Operation[ClientT]],
    *,
    users: int,
    duration_s: float,
) -> list[RequestSample]:
    """Run ``users`` back-to-back senders for ``duration_s``; one sample per request.

    No request starts after ``duration_s``; those under way then are awaited. Latency is
    measured from the actual send, which is also the sample's ``scheduled_s``.
    """
    if users < 1 or duration_s <= 0:
        raise ValueError(f"users must be >= 1 and duration > 0, got {users}, {duration_s}")
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + duration_s
    counter = itertools.count()
    samples: list[RequestSample] = []

    async def user() -> None:
        while loop.time() < end:
            op = operation_at(next(counter))
            sent = loop.time()
            status, error = await op.outcome(client)
            at = sent - start
            samples.append(RequestSample(op.endpoint, at, at, loop.time() - sent, status, error))

    await asyncio.gather(*(user() for _ in range(users)))
    return samples
