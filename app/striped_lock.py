"""A fixed set of locks addressed by key: per-key mutual exclusion without a lock per key."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager


class StripedLock:
    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def _stripe(self, key: str) -> int:
        # A stable digest, so the same key maps to the same stripe in every process.
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest()) % len(
            self._locks
        )

    @contextmanager
    def hold(self, keys: Iterable[str]) -> Iterator[None]:
        """Hold the stripes of all ``keys``, taken in stripe order so two callers never deadlock."""
        with ExitStack() as stack:
            for stripe in sorted({self._stripe(k) for k in keys}):
                stack.enter_context(self._locks[stripe])
            yield

    @contextmanager
    def hold_all(self) -> Iterator[None]:
        """Hold every stripe (in stripe order, as ``hold`` takes them): no key is held by anyone
        else meanwhile."""
        with ExitStack() as stack:
            for lock in self._locks:
                stack.enter_context(lock)
            yield
