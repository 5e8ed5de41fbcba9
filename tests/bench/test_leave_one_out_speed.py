"""bench.leave_one_out_speed on tiny sizes: the ranking it times is the real one (R@1 between
0 and 1 on its noise), and the store mode runs a service's computation end to end."""

from __future__ import annotations

import pytest

from bench.leave_one_out_speed import NOISE, measure, measure_store


def test_the_timed_ranking_is_neither_trivial_nor_hopeless() -> None:
    seconds, r_at_1, queries = measure(300, 1280, 200, NOISE)
    assert queries == 200 and seconds > 0
    assert 0.2 < r_at_1 < 1.0


def test_the_store_mode_computes_twice(capsys: pytest.CaptureFixture[str]) -> None:
    measure_store(40, 16, 50, NOISE)
    out = capsys.readouterr().out
    assert "first:" in out and "warm:" in out and "for 50 queries" in out
