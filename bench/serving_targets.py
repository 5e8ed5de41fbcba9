"""Issue 10's targets, computed from one store's run: its service windows and the in-process
baselines measured beside them (so every ratio divides two figures measured side by side)."""

from __future__ import annotations

import math

from bench.open_loop_step import OpenLoopStep
from bench.run_record import OpenLoopRun, StoreRun
from bench.targets import Target

SERVICE_OVER_RAW_ORT = 0.85
SERVICE_OVER_PIPELINE = 0.85
BATCHING_THROUGHPUT_GAIN = 1.3
BATCHING_P95_LIMIT = 1.5
ONE_CLIENT_P50_LIMIT = 1.15
ENROLL_OVER_RAW_ORT = 0.8
OVERLOAD_P99_LIMIT = 4.0
REJECTION_MS_LIMIT = 50.0


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(b) else math.nan


def _step_invalid(run: OpenLoopRun, name: str) -> str | None:
    """Why an open-loop step does not count, or ``None``. Arrivals dropped at the generator's
    in-flight cap mean the service held that many requests unanswered: a miss of the service,
    not of the generator, so such a step stays valid (and its figures miss)."""
    step = run.step
    if step.valid or step.dropped:
        return None
    return (
        f"the {name} step sent {step.achieved_rps:.1f}/s of the {step.requested_rps:.1f}/s "
        f"asked ({step.achieved_share:.0%} < 95 %): the generator, not the service, limited it"
    )


def _step_text(step: OpenLoopStep) -> str:
    return (
        f"asked {step.requested_rps:.1f}/s, sent {step.achieved_rps:.1f}/s, "
        f"{step.accepted} accepted, {step.rejected} rejected (503)"
        + (f", {step.dropped} dropped at the in-flight cap" if step.dropped else "")
    )


def serving_targets(run: StoreRun) -> list[Target]:
    inproc = run.inproc
    best = inproc.best
    sat = run.saturation_rps
    sat_clients = run.saturation.stats
    on, off, b1 = run.concurrent.stats, run.off.stats, run.batch1.stats
    no_switch = None if run.has_batching else "the service has no batching setting: on = off"
    baseline, overload = run.baseline.step, run.overload.step
    open_invalid = _step_invalid(run.baseline, "70 %") or _step_invalid(run.overload, "overload")
    single = inproc.single
    rejected_ms = overload.rejected_p99_ms if overload.rejected else 0.0
    return [
        Target(
            "search_over_raw_ort",
            "search/s at saturation / raw ORT, best batch",
            _ratio(sat, best.images_per_s),
            ">=",
            SERVICE_OVER_RAW_ORT,
            "x",
            f"{sat:.1f} searches/s over HTTP ({sat_clients.requests} searches) / "
            f"{best.images_per_s:.1f} images/s (batch {best.batch_size})",
        ),
        Target(
            "search_over_pipeline",
            "search/s at saturation / in-process pipeline",
            _ratio(sat, inproc.pipeline.images_per_s),
            ">=",
            SERVICE_OVER_PIPELINE,
            "x",
            f"{sat:.1f} searches/s / {inproc.pipeline.images_per_s:.1f} images/s decoded and "
            f"embedded in process (batch {inproc.pipeline.batch_size}, "
            f"{inproc.pipeline.decode_threads} decode threads)",
        ),
        Target(
            "batching_throughput",
            "batching on / off: search/s, same clients",
            _ratio(on.throughput_rps, off.throughput_rps),
            ">=",
            BATCHING_THROUGHPUT_GAIN,
            "x",
            f"{on.throughput_rps:.1f} / {off.throughput_rps:.1f} searches/s",
            no_switch,
        ),
        Target(
            "batching_p95",
            "batching on / off: p95, same clients",
            _ratio(on.p95_ms, off.p95_ms),
            "<=",
            BATCHING_P95_LIMIT,
            "x",
            f"p95 {on.p95_ms:.1f} / {off.p95_ms:.1f} ms",
            no_switch,
        ),
        Target(
            "batching_over_batch1_throughput",
            "batching on / executor at batch 1: search/s",
            _ratio(on.throughput_rps, b1.throughput_rps),
            None,
            math.nan,
            "x",
            f"{on.throughput_rps:.1f} / {b1.throughput_rps:.1f} searches/s, p95 "
            f"{on.p95_ms:.1f} / {b1.p95_ms:.1f} ms (what batching itself adds)",
        ),
        Target(
            "one_client_p50",
            "one client: search p50 / in-process decode + infer",
            _ratio(run.one_client.stats.p50_ms, single.total_p50_ms),
            "<=",
            ONE_CLIENT_P50_LIMIT,
            "x",
            f"p50 {run.one_client.stats.p50_ms:.1f} ms over HTTP / {single.total_p50_ms:.1f} ms "
            f"(decode p50 {single.decode_p50_ms:.1f} + inference p50 "
            f"{single.inference_p50_ms:.1f}, batch 1)",
        ),
        Target(
            "enroll_over_raw_ort",
            "enrollment images/s / raw ORT, best batch",
            _ratio(run.enroll_images_per_s, best.images_per_s),
            ">=",
            ENROLL_OVER_RAW_ORT,
            "x",
            f"{run.enroll_images_per_s:.1f} images/s ({run.enroll_images} per request) / "
            f"{best.images_per_s:.1f} images/s",
        ),
        Target(
            "overload_p99",
            "open loop 2x: accepted p99 / p99 at 70 % load",
            # Arrivals dropped at the in-flight cap have no latency: their p99 would be a
            # lower bound of what the service made them wait, so no figure passes.
            math.nan
            if overload.dropped or baseline.dropped
            else _ratio(overload.accepted_p99_ms, baseline.accepted_p99_ms),
            "<=",
            OVERLOAD_P99_LIMIT,
            "x",
            f"p99 {overload.accepted_p99_ms:.1f} / {baseline.accepted_p99_ms:.1f} ms; "
            f"2x: {_step_text(overload)}; 70 %: {_step_text(baseline)}",
            open_invalid,
        ),
        Target(
            "overload_rejection_ms",
            "open loop 2x: 503 rejections' p99",
            rejected_ms,
            "<",
            REJECTION_MS_LIMIT,
            "ms",
            (
                f"{overload.rejected} rejections, p99 {overload.rejected_p99_ms:.1f} ms, "
                f"max {overload.rejected_max_ms:.1f} ms from the scheduled send"
                if overload.rejected
                else "no rejections"
            ),
            open_invalid,
        ),
        Target(
            "overload_other_5xx",
            "open loop 2x: 5xx other than 503 rejections",
            float(overload.other_5xx),
            "==",
            0,
            "count",
            f"{overload.other_5xx} (503s without Retry-After or problem+json count here)",
            open_invalid,
        ),
        Target(
            "overload_connection_errors",
            "open loop 2x: connection errors + timeouts",
            float(overload.connection_errors + overload.timeouts),
            "==",
            0,
            "count",
            f"{overload.connection_errors} connection errors, {overload.timeouts} timeouts",
            open_invalid,
        ),
    ]
