"""Open-loop load generation: requests leave on a fixed schedule whether or not earlier ones
have been answered, and latency is measured from each request's *scheduled* time.

A closed-loop client (each user sends its next request only after the previous answer) slows
down exactly when the server does, so it stops sending during a stall and never records the
requests that would have waited behind it: coordinated omission. Measuring from the schedule
charges every request with the wait it would really have had, including any delay of the
generator itself (reported separately as send lag). The generator's own garbage collector is
kept out of the window (``collector_paused``): its pauses would be charged to the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bench.loadtest.collector_paused import collector_paused
from bench.loadtest.request_sample import ClientT, Operation, RequestSample

# Lead time before the first due time, so the first requests are not already late while the
# generator creates its tasks.
_START_LEAD_S = 0.05


async def run_open_loop(
    client: ClientT,
    operation_at: Callable[[int], Operation[ClientT]],
    schedule: Sequence[float],
    *,
    max_in_flight: int,
) -> list[RequestSample]:
    """Send ``operation_at(i)`` at ``schedule[i]`` seconds; return one sample per due request.

    At most ``max_in_flight`` requests are outstanding; a request due while the cap is reached
    is not sent and comes back as a dropped sample (an error), so an overloaded server cannot
    make the generator pile up unbounded connections. Returns (or raises) only once every sent
    request has an answer or failed (bounded by the client's timeout). Samples are in schedule
    order.
    """
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    with collector_paused():
        loop = asyncio.get_running_loop()
        start = loop.time() + _START_LEAD_S
        samples: list[RequestSample | None] = [None] * len(schedule)
        tasks: list[asyncio.Task[None]] = []
        in_flight = 0

        async def one(i: int, op: Operation[ClientT], due: float) -> None:
            nonlocal in_flight
            sent = loop.time()
            try:
                status, error = await op.outcome(client)
            finally:
                in_flight -= 1
            samples[i] = RequestSample(
                endpoint=op.endpoint,
                scheduled_s=due - start,
                sent_s=sent - start,
                latency_s=loop.time() - due,
                status=status,
                error=error,
            )

        try:
            for i, offset in enumerate(schedule):
                due = start + offset
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                op = operation_at(i)
                if in_flight >= max_in_flight:
                    samples[i] = RequestSample(
                        op.endpoint, offset, None, None, None, "in-flight cap"
                    )
                    continue
                in_flight += 1
                tasks.append(asyncio.create_task(one(i, op, due)))
        finally:
            # Every sent request is awaited, even when scheduling fails or the run is cancelled
            # (Ctrl-C): the caller's cleanup must not race requests still under way, e.g. an
            # enrollment that would commit after its DELETE. `wait`, unlike `gather`, neither stops
            # at the first failed request nor cancels the others when this coroutine is cancelled.
            if tasks:
                await asyncio.wait(tasks)
        for task in tasks:
            task.result()  # re-raise a request's unexpected (non-HTTP) exception
        return [s for s in samples if s is not None]
