"""One measured window against the running service: what the client saw, how the machine's CPU
time split over the same seconds, and what the service's own metrics say happened meanwhile.

Everything comes from the same two instants (a ``/metrics`` scrape and a CPU snapshot on each
side of the load), so the figures of one window can be divided by each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.batch_metrics import BatchWindow, batch_window
from bench.loadtest.latency_stats import EndpointStats, endpoint_stats
from bench.loadtest.request_sample import RequestSample
from bench.process_cpu import CpuWindow, cpu_snapshot, cpu_window
from bench.stage_metrics import (
    REQUEST_METRIC,
    STAGE_METRIC,
    StageTime,
    histogram_totals,
    window_times,
)


@dataclass(frozen=True)
class ServiceWindow:
    """``samples``: one per request (bench/loadtest's). ``stats``: over all of them, with
    throughput per second of ``cpu.wall_s``. ``stages``: ``retrieval_stage_seconds`` per stage;
    ``request``: the service's own time for ``route`` (``http_request_duration_seconds``)."""

    samples: list[RequestSample]
    stats: EndpointStats
    cpu: CpuWindow
    stages: dict[str, StageTime]
    request: StageTime
    batching: BatchWindow

    def to_json(self) -> dict[str, Any]:
        return {
            "stats": self.stats.__dict__,
            "cpu_s": self.cpu.__dict__ | {"client_share": self.cpu.client_share},
            "stages": {n: s.__dict__ | {"mean_ms": s.mean_ms} for n, s in self.stages.items()},
            "request": self.request.__dict__ | {"mean_ms": self.request.mean_ms},
            "batching": self.batching.__dict__
            | {
                "mean_batch_size": self.batching.mean_batch_size,
                "mean_queue_wait_ms": self.batching.mean_queue_wait_ms,
                "mean_batch_inference_ms": self.batching.mean_batch_inference_ms,
            },
        }


async def scrape_metrics(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


async def measure_window(
    client: httpx.AsyncClient,
    service_pid: int,
    route: str,
    load: Callable[[], Awaitable[list[RequestSample]]],
    *,
    endpoint: str,
) -> ServiceWindow:
    """Run ``load`` between two scrapes (``client``: httpx, for ``/metrics`` only) and CPU
    snapshots. ``route``: the template the service times the load's requests under, e.g.
    ``/search``; ``endpoint``: the samples' label."""
    m0 = await scrape_metrics(client)
    c0 = cpu_snapshot(service_pid)
    samples = await load()
    c1 = cpu_snapshot(service_pid)
    m1 = await scrape_metrics(client)
    cpu = cpu_window(c0, c1)
    stages = window_times(
        histogram_totals(m0, STAGE_METRIC, "stage"), histogram_totals(m1, STAGE_METRIC, "stage")
    )
    requests = window_times(
        histogram_totals(m0, REQUEST_METRIC, "route"),
        histogram_totals(m1, REQUEST_METRIC, "route"),
    )
    return ServiceWindow(
        samples=samples,
        stats=endpoint_stats(endpoint, samples, cpu.wall_s),
        cpu=cpu,
        stages={s.name: s for s in stages},
        request=next((r for r in requests if r.name == route), StageTime(route, 0, 0.0)),
        batching=batch_window(m0, m1),
    )
