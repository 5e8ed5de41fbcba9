"""A wrapper around an embedder's ONNX Runtime session, for tests that must see or steer the model
calls: it records every call's input batch, can hold chosen calls until the test releases
them (so requests pile up behind a running batch), and can make chosen calls raise (fault
injection). Everything else goes to the real session, which still computes every answer."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from artifact.onnx_embedder import OnnxEmbedder

# What an injected failure says: a path, as ONNX Runtime's own messages often hold, so tests can
# check that it never reaches a client.
INJECTED_MESSAGE = "injected failure running /srv/secret/models/embedder.onnx"


class GatedSession:
    def __init__(self, session: Any) -> None:
        self._session = session
        self._cond = threading.Condition()
        self.batches: list[npt.NDArray[np.uint8]] = []
        self._holds: dict[int, threading.Event] = {}
        self._failures: set[int] = set()

    def hold(self, call: int, release: threading.Event | None = None) -> threading.Event:
        """Call number ``call`` (0-based) waits until ``release`` (returned; new if None) is set."""
        self._holds[call] = release if release is not None else threading.Event()
        return self._holds[call]

    def fail(self, call: int) -> None:
        """Call number ``call`` raises instead of running."""
        self._failures.add(call)

    def wait_for_calls(self, n: int, timeout: float = 30) -> None:
        """Until ``n`` calls have started (held ones included)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.batches) >= n, timeout):
                raise AssertionError(f"{len(self.batches)} model calls started, waited for {n}")

    def run(self, output_names: Sequence[str], feeds: Mapping[str, Any], *args: Any) -> list[Any]:
        (batch,) = feeds.values()
        with self._cond:
            call = len(self.batches)
            self.batches.append(np.array(batch, copy=True))
            self._cond.notify_all()
        hold = self._holds.get(call)
        if hold is not None and not hold.wait(60):
            raise AssertionError(f"model call {call} was never released")
        if call in self._failures:
            raise RuntimeError(INJECTED_MESSAGE)
        result: list[Any] = self._session.run(output_names, feeds, *args)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def gate(embedder: OnnxEmbedder) -> GatedSession:
    """Put a GatedSession around ``embedder``'s session and return it."""
    gated = GatedSession(embedder._session)
    embedder._session = gated  # type: ignore[assignment]
    return gated
