"""The background share's pauses: ``(1 / share - 1)`` times the job's own work, counted once
whether it came before a model call or after it."""

from __future__ import annotations

import time

import pytest

from app import background_share
from app.background_share import BackgroundShare


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 9))
        self.now += seconds


def test_pace_pauses_for_the_work_since_the_last_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(background_share, "time", clock)
    share = BackgroundShare(retriever=None, share=0.25)  # type: ignore[arg-type]
    share.pace()  # the first: nothing measured yet
    clock.now += 0.2  # the job checked items for 0.2 s
    share.pace()
    clock.now += 0.1
    share.pace()
    # 3x each stretch of work (1 / 0.25 - 1), the pauses themselves not counted as work.
    assert clock.slept == [0.0, 0.6, 0.3]
    with pytest.raises(ValueError):
        BackgroundShare(retriever=None, share=0)  # type: ignore[arg-type]
    assert time.perf_counter() > 0  # the real module is untouched
