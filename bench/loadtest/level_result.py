"""The outcome of one scenario at one offered load."""

from __future__ import annotations

from dataclasses import dataclass

from bench.loadtest.latency_stats import EndpointStats

# Above this share of one core, the (single-threaded, asyncio) generator may itself be the
# bottleneck: its send lag grows and the latencies it reports include its own delay.
CLIENT_CPU_WARNING = 0.8
# Send lag (p99) above this means requests left noticeably later than scheduled.
SEND_LAG_WARNING_MS = 10.0


@dataclass(frozen=True)
class LevelResult:
    """``client_cpu_share``: generator CPU seconds (``time.process_time``) per wall second,
    1.0 = one core fully busy. ``wall_s``: from the start to the last answer, at least
    ``duration_s``."""

    scenario: str
    offered_rps: float
    duration_s: float
    wall_s: float
    client_cpu_s: float
    client_cpu_share: float
    endpoints: list[EndpointStats]
    cleaned_up_items: int

    @property
    def client_bound(self) -> bool:
        lag = max((e.send_lag_p99_ms for e in self.endpoints), default=0.0)
        return self.client_cpu_share >= CLIENT_CPU_WARNING or lag > SEND_LAG_WARNING_MS
