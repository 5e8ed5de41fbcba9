"""Where a search's time goes at saturation, so a throughput miss is explained rather than
guessed: the machine's core time over a window, per answered search, split into the bench
client, the service's decode, its inference and the rest of its work (HTTP, multipart parsing,
the index, Python), other processes, and idle; then the wall time a search spent in each place.

Measured: the client's, the service's and the machine's CPU time (``bench/process_cpu.py``).
The service's CPU is split with the CPU time the same work took in process on the same photos
and session (its threads' wall times overstate their core time whenever they wait for a core):
decode = the one-image-at-a-time decode's thread CPU time (p50), inference = raw ORT's CPU time
per image at the window's mean batch size (interpolated between the measured sizes). The rest
is what remains of the service's CPU: HTTP, multipart parsing, the index, the event loop.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.raw_ort import MeasuredBatch
from bench.run_record import InProcessBaselines
from bench.service_window import ServiceWindow


@dataclass(frozen=True)
class SearchBreakdown:
    """``core_ms``: core milliseconds per search, by part, summing to ``budget_ms`` (the
    machine's cores × the window's wall time / searches). ``wall_ms``: per search."""

    searches: int
    cores: float
    ort_threads: int
    mean_batch: float
    core_ms: dict[str, float]
    budget_ms: float
    wall_ms: dict[str, float]


def inference_core_ms(raw: Sequence[MeasuredBatch], batch: float) -> float:
    """Core ms per image of a batch of ``batch`` images (fractional: a mean), from the raw ORT
    CPU times, linear in the batch size between the measured sizes and the nearest measured
    size outside them."""
    points = sorted((b.batch_size, b.core_ms_per_image) for b in raw)
    return float(np.interp(batch, [p[0] for p in points], [p[1] for p in points]))


def search_breakdown(
    window: ServiceWindow, inproc: InProcessBaselines, *, ort_threads: int
) -> SearchBreakdown:
    """``ort_threads``: ONNX Runtime intra-op threads of the executor (resolved, not 0)."""
    searches = max(window.request.calls, 1)
    cpu = window.cpu
    batch = window.batching.mean_batch_size or 1.0
    decode_ms = inproc.single.decode_cpu_p50_ms
    infer_ms = inference_core_ms(inproc.raw, batch)

    def per(seconds: float) -> float:
        return 1000 * seconds / searches

    core_ms = {
        "client (bench process)": per(cpu.client_s),
        "service: HTTP, multipart, index, rest": per(cpu.service_s) - decode_ms - infer_ms,
        "service: decode": decode_ms,
        "service: inference": infer_ms,
        "other processes": per(cpu.other_s),
        "idle": per(cpu.idle_s),
    }
    stage = window.stages
    wall_ms = {
        "decode": stage["decode"].mean_ms if "decode" in stage else 0.0,
        "queued for inference": window.batching.mean_queue_wait_ms,
        "batch inference": window.batching.mean_batch_inference_ms,
        "in the service": window.request.mean_ms,
        "at the client": _mean_latency_ms(window),
    }
    return SearchBreakdown(
        searches=window.request.calls,
        cores=cpu.machine_s / cpu.wall_s if cpu.wall_s > 0 else 0.0,
        ort_threads=ort_threads,
        mean_batch=batch,
        core_ms=core_ms,
        budget_ms=per(cpu.machine_s),
        wall_ms=wall_ms,
    )


def _mean_latency_ms(window: ServiceWindow) -> float:
    latencies = [s.latency_s for s in window.samples if s.latency_s is not None]
    return 1000 * statistics.fmean(latencies) if latencies else 0.0


def breakdown_lines(b: SearchBreakdown) -> list[str]:
    lines = [
        f"    core ms per search ({b.searches} searches, {b.cores:.1f} cores; decode and "
        f"inference at their in-process CPU time, mean batch {b.mean_batch:.1f}, "
        f"{b.ort_threads} ORT threads)",
    ]
    for part, ms in b.core_ms.items():
        share = ms / b.budget_ms if b.budget_ms else 0.0
        lines.append(f"      {part:<40} {ms:>7.2f}  {share:>5.0%}")
    lines.append(f"      {'= cores x wall / searches':<40} {b.budget_ms:>7.2f}  100%")
    lines.append(
        "    wall ms per search: " + ", ".join(f"{part} {ms:.1f}" for part, ms in b.wall_ms.items())
    )
    return lines
