"""Retrying a write safely: one ``Idempotency-Key`` per write, sent again with every attempt.

A write answered 503 (overload, a store outage, or "outcome unknown": the store may have
committed it) or lost in transit is sent again with the same key, so the service either applies
it once or returns the answer it already recorded. Waits follow ``Retry-After`` (capped), else
an exponential back-off.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRIED_STATUSES = frozenset({503})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # sends in all, the first included
    first_wait_s: float = 0.5  # doubled after each attempt without a Retry-After
    max_wait_s: float = 10.0  # cap on any one wait, Retry-After included
    sleep: Callable[[float], None] = time.sleep

    def wait_s(self, attempt: int, response: httpx.Response | None) -> float:
        """How long to wait after the ``attempt``-th send (0-based) failed with ``response``
        (None: a transport error)."""
        advised = None if response is None else _retry_after_s(response)
        backoff = self.first_wait_s * 2**attempt
        return min(self.max_wait_s, backoff if advised is None else advised)


def send_idempotent(
    send: Callable[[dict[str, str]], httpx.Response], policy: RetryPolicy | None = None
) -> httpx.Response:
    """``send(headers)`` until it is answered with anything but 503, at most ``policy.attempts``
    times, every time with the same fresh ``Idempotency-Key`` in ``headers``. Returns the last
    answer; re-raises the last transport error if no attempt was answered."""
    policy = policy or RetryPolicy()
    headers = {IDEMPOTENCY_HEADER: uuid.uuid4().hex}
    for attempt in range(policy.attempts):
        try:
            response: httpx.Response | None = send(headers)
        except httpx.TransportError:
            if _is_last(policy, attempt):
                raise
            response = None
        if response is not None and _is_final(policy, attempt, response):
            return response
        policy.sleep(policy.wait_s(attempt, response))
    raise AssertionError("unreachable: the last attempt returns or raises")


async def send_idempotent_async(
    send: Callable[[dict[str, str]], Awaitable[httpx.Response]],
    policy: RetryPolicy | None = None,
) -> httpx.Response:
    """``send_idempotent`` for an async client, by the same rules; the waits are
    ``asyncio.sleep`` (the policy's ``sleep`` is not used)."""
    policy = policy or RetryPolicy()
    headers = {IDEMPOTENCY_HEADER: uuid.uuid4().hex}
    for attempt in range(policy.attempts):
        try:
            response: httpx.Response | None = await send(headers)
        except httpx.TransportError:
            if _is_last(policy, attempt):
                raise
            response = None
        if response is not None and _is_final(policy, attempt, response):
            return response
        await asyncio.sleep(policy.wait_s(attempt, response))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _is_last(policy: RetryPolicy, attempt: int) -> bool:
    return attempt == policy.attempts - 1


def _is_final(policy: RetryPolicy, attempt: int, response: httpx.Response) -> bool:
    """Whether ``response`` is the answer to return: not a retried status, or out of attempts."""
    return response.status_code not in RETRIED_STATUSES or _is_last(policy, attempt)


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date (the service sends seconds)
