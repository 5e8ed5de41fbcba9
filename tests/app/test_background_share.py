"""The background share's pauses: ``(1 / share - 1)`` times the job's own work, counted once
whether it came before a model call or after it."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from app import background_share
from app.background_share import BackgroundShare
from app.inference_executor import YIELD_POLL_S

NO_EXECUTOR = SimpleNamespace(executor=None)


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
    share = BackgroundShare(retriever=NO_EXECUTOR, share=0.25)  # type: ignore[arg-type]
    share.pace()  # the first: nothing measured yet
    clock.now += 0.2  # the job checked items for 0.2 s
    share.pace()
    clock.now += 0.1
    share.pace()
    # 3x each stretch of work (1 / 0.25 - 1), the pauses themselves not counted as work.
    assert clock.slept == [0.0, 0.6, 0.3]
    with pytest.raises(ValueError):
        BackgroundShare(retriever=NO_EXECUTOR, share=0)  # type: ignore[arg-type]
    assert time.perf_counter() > 0  # the real module is untouched


class Serving:
    """The serving model's executor, busy for its first ``busy_polls`` looks."""

    def __init__(self, busy_polls: int) -> None:
        self.busy_polls = busy_polls
        self.looks = 0

    @property
    def foreground_busy(self) -> bool:
        self.looks += 1
        return self.looks <= self.busy_polls


def test_a_pause_lasts_until_the_serving_model_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(background_share, "time", clock)
    serving = Serving(busy_polls=3)
    retriever = SimpleNamespace(executor=SimpleNamespace(yield_to=serving))
    share = BackgroundShare(retriever=retriever, share=0.5)  # type: ignore[arg-type]
    share.pace()
    assert clock.slept == [0.0, YIELD_POLL_S, YIELD_POLL_S, YIELD_POLL_S]
    # The wait is not counted as the job's work: the next pause is for the work after it.
    clock.now += 0.1
    share.pace()
    assert clock.slept[4:] == [0.1]
    assert serving.looks == 5


def test_no_wait_without_a_second_model(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(background_share, "time", clock)
    retriever = SimpleNamespace(executor=SimpleNamespace(yield_to=None))
    share = BackgroundShare(retriever=retriever, share=0.5)  # type: ignore[arg-type]
    clock.now += 0.2
    share.pace()
    clock.now += 0.2
    share.pace()
    assert clock.slept == [0.0, 0.2]
