"""Constant-arrival-rate schedules for the open-loop generator."""

from __future__ import annotations

import math


def constant_rate_schedule(rate_per_s: float, duration_s: float) -> list[float]:
    """Due times, in seconds from the start, of requests at a constant ``rate_per_s``.

    Returns every ``i / rate_per_s`` (``i = 0, 1, ...``) below ``duration_s``, i.e.
    ``ceil(rate_per_s * duration_s)`` times. Evenly spaced rather than Poisson: the same run
    twice offers the same load, so two servers (or two builds) are compared on identical input.
    """
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be > 0, got {rate_per_s}, {duration_s}")
    # The epsilon keeps e.g. 0.1 * 30 = 3.0000000000000004 from gaining a 4th request at 30 s.
    count = math.ceil(rate_per_s * duration_s - 1e-9)
    return [i / rate_per_s for i in range(count)]
