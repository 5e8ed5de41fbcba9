"""Run one scenario at one offered load (open loop), then clean up what it wrote."""

from __future__ import annotations

import time

import httpx

from bench.loadtest.arrival_schedule import constant_rate_schedule
from bench.loadtest.latency_stats import summarize
from bench.loadtest.level_result import LevelResult
from bench.loadtest.open_loop import run_open_loop
from bench.loadtest.scenarios import Scenario


async def run_level(
    client: httpx.AsyncClient,
    scenario: Scenario,
    *,
    rate_per_s: float,
    duration_s: float,
    max_in_flight: int,
) -> LevelResult:
    schedule = constant_rate_schedule(rate_per_s, duration_s)
    wall0, cpu0 = time.monotonic(), time.process_time()
    samples = await run_open_loop(client, scenario.operation, schedule, max_in_flight=max_in_flight)
    cpu = time.process_time() - cpu0
    # Throughput is per second of the offered window at least: the last arrival is due just
    # before `duration_s`, so a shorter wall time would overstate it.
    wall = max(time.monotonic() - wall0, duration_s)
    # Cleanup is not part of the measured window.
    cleaned = await scenario.cleanup(client)
    return LevelResult(
        scenario=scenario.name,
        offered_rps=rate_per_s,
        duration_s=duration_s,
        wall_s=wall,
        client_cpu_s=cpu,
        client_cpu_share=cpu / wall if wall > 0 else 0.0,
        endpoints=summarize(samples, wall),
        cleaned_up_items=cleaned,
    )
