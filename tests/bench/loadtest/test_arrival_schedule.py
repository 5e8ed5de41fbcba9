from __future__ import annotations

import pytest

from bench.loadtest.arrival_schedule import constant_rate_schedule


def test_evenly_spaced_due_times() -> None:
    assert constant_rate_schedule(5, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    assert constant_rate_schedule(2, 1.9) == pytest.approx([0, 0.5, 1.0, 1.5])
    # 0.1 * 30 is 3.0000000000000004 in floating point: still 3 requests, not 2 or 4.
    assert len(constant_rate_schedule(0.1, 30)) == 3
    assert len(constant_rate_schedule(20, 15)) == 300


def test_refuses_non_positive_inputs() -> None:
    with pytest.raises(ValueError):
        constant_rate_schedule(0, 10)
    with pytest.raises(ValueError):
        constant_rate_schedule(5, -1)
