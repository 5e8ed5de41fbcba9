"""``summary.txt`` of ``make bench``: what was measured, per store, then the targets table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.loadtest.level_result import CLIENT_CPU_WARNING
from bench.run_record import InProcessBaselines, OpenLoopRun, StoreRun
from bench.search_breakdown import breakdown_lines, search_breakdown
from bench.service_window import ServiceWindow
from bench.targets import Target, targets_table

_SETTINGS_SHOWN = (
    "batching",
    "worker_threads",
    "inference_threads",
    "inference_batch",
    "batch_max_delay_us",
    "admission_queue",
    "queue_timeout_ms",
)


def _store_line(info: Mapping[str, Any]) -> str:
    if info["backend"] == "redis":
        return (
            f"redis = {info['url']}, namespace {info['namespace']} "
            f"({info.get('keys_deleted')} keys deleted afterwards)"
        )
    return "sqlite = embedded store in a temporary SQLite file"


def _inprocess_lines(inproc: InProcessBaselines, ort_threads: int) -> list[str]:
    best, pipe, single = inproc.best, inproc.pipeline, inproc.single
    threads = f"{inproc.ort_threads}" if inproc.ort_threads else f"0 = ORT's default, {ort_threads}"
    return [
        f"(a) in this process while the service idles (service's ORT intra-op threads: {threads})",
        "    raw ONNX Runtime, preprocessed input, one caller: on the service's session, and on",
        "    ORT's own (every usable core, spinning)",
        f"    {'batch':>5} {'service':>10} {'ORT own':>10}   (images/s)",
        *(
            f"    {b.batch_size:>5} {b.images_per_s:>10.1f} {c.images_per_s:>10.1f}"
            for b, c in zip(inproc.raw, inproc.ceiling, strict=True)
        ),
        f"    best (the ceiling): batch {best.batch_size}, {best.images_per_s:.1f} images/s",
        f"    pipeline, decode in {pipe.decode_threads} threads while ORT runs batch "
        f"{pipe.batch_size}: {pipe.images_per_s:.1f} images/s",
        f"    one image at a time: decode p50 {single.decode_p50_ms:.1f} ms, inference p50 "
        f"{single.inference_p50_ms:.1f} ms, per image p50 {single.total_p50_ms:.1f} ms "
        f"({single.images} images)",
    ]


_WINDOW_HEAD = (
    f"    {'window':<44} {'clients':>7} {'ok/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
    f"{'errors':>6} {'batch':>6} {'client cpu':>10}"
)


def _window_row(title: str, clients: int, w: ServiceWindow, rate: float | None = None) -> str:
    s = w.stats
    flag = "  CLIENT-BOUND" if w.cpu.client_share >= CLIENT_CPU_WARNING else ""
    shown = s.throughput_rps if rate is None else rate
    batch = f"{w.batching.mean_batch_size:.1f}" if w.batching.batches else "-"
    return (
        f"    {title:<44} {clients:>7} {shown:>8.1f} {s.p50_ms:>8.1f} {s.p95_ms:>8.1f} "
        f"{s.p99_ms:>8.1f} {s.errors:>6} {batch:>6} "
        f"{w.cpu.client_share:>10.0%}{flag}"
    )


def _ms(value: float) -> str:
    """A latency in ms, ``-`` when there was none to measure."""
    return f"{value:.1f}" if math.isfinite(value) else "-"


def _open_loop_lines(runs: Sequence[tuple[str, OpenLoopRun]]) -> list[str]:
    lines = [
        "    open loop, latency from the scheduled send (ms); 503 = rejections with Retry-After",
        f"    {'step':<6} {'asked/s':>8} {'sent/s':>8} {'accepted':>8} {'p50':>7} {'p99':>7} "
        f"{'503s':>5} {'503 p99':>8} {'503 max':>8} {'5xx':>4} {'conn':>4} {'t/o':>4} "
        f"{'drops':>5} {'lag p99':>7}  service's rejections",
    ]
    for name, run in runs:
        s = run.step
        reasons = ", ".join(f"{k} {v}" for k, v in run.window.batching.rejections.items())
        valid = "" if s.valid else "  (< 95 % of the asked rate)"
        lines.append(
            f"    {name:<6} {s.requested_rps:>8.1f} {s.achieved_rps:>8.1f} {s.accepted:>8} "
            f"{_ms(s.accepted_p50_ms):>7} {_ms(s.accepted_p99_ms):>7} {s.rejected:>5} "
            f"{_ms(s.rejected_p99_ms):>8} {_ms(s.rejected_max_ms):>8} {s.other_5xx:>4} "
            f"{s.connection_errors:>4} {s.timeouts:>4} {s.dropped:>5} {s.send_lag_p99_ms:>7.1f}"
            f"  {reasons or '(none exported)'}{valid}"
        )
    return lines


def _stage_lines(windows: Sequence[tuple[str, ServiceWindow]]) -> list[str]:
    """ms per request of each stage (``retrieval_stage_seconds``) and the rest of the
    service's time for the request, per window."""
    names = list(dict.fromkeys(n for _, w in windows for n, s in w.stages.items() if s.calls))
    lines = [
        "    service time per request by stage (ms; rest = HTTP, multipart, queueing, waiting "
        "for a thread)",
        f"    {'window':<26}" + "".join(f" {n:>12}" for n in names) + f" {'rest':>8} {'total':>8}",
    ]
    for title, w in windows:
        calls = max(w.request.calls, 1)
        per = [1000 * w.stages[n].total_s / calls if n in w.stages else 0.0 for n in names]
        rest = w.request.mean_ms - sum(per)
        lines.append(
            f"    {title:<26}"
            + "".join(f" {v:>12.2f}" for v in per)
            + f" {rest:>8.2f} {w.request.mean_ms:>8.2f}"
        )
    return lines


def _store_lines(store: str, run: StoreRun, meta: Mapping[str, Any]) -> list[str]:
    clients, sat = meta["clients"], meta["saturation_clients"]
    enroll = run.enroll
    return [
        f"== {store} store",
        *_inprocess_lines(run.inproc, meta["ort_threads"]),
        "",
        "(b, c) service over HTTP, lean client (pre-built bodies, one process)",
        _WINDOW_HEAD,
        _window_row("search at saturation, batching on", sat, run.saturation),
        _window_row("search, batching on", clients, run.concurrent),
        _window_row("search, batching off (released path)", clients, run.off),
        _window_row("search, one executor at batch size 1", clients, run.batch1),
        _window_row("search, one client at a time", 1, run.one_client),
        _window_row(
            f"enrollment, images/s ({run.enroll_images} per request)",
            meta["enroll_clients"],
            enroll,
            rate=run.enroll_images_per_s,
        ),
        "    (batch = mean images per executed batch, from the service's metrics; client cpu ="
        " this process's",
        f"    CPU per wall second, 100 % = one core; CLIENT-BOUND at >= {CLIENT_CPU_WARNING:.0%})",
        "",
        f"    per search at saturation ({sat} clients):",
        *breakdown_lines(
            search_breakdown(run.saturation, run.inproc, ort_threads=meta["ort_threads"])
        ),
        "",
        *_open_loop_lines([("70 %", run.baseline), ("2x", run.overload)]),
        "",
        *_stage_lines(
            [
                ("search at saturation", run.saturation),
                ("search, batching off", run.off),
                ("search, one client", run.one_client),
                ("enrollment", enroll),
            ]
        ),
        "",
    ]


def summary_text(
    meta: Mapping[str, Any],
    runs: Mapping[str, StoreRun],
    targets: Mapping[str, Sequence[Target]],
    *,
    int8_lines: Sequence[str] = (),
) -> str:
    """``int8_lines``: the INT8 twin's section (``--int8-model``), printed after the targets."""
    first = next(iter(runs.values()))
    settings = meta["settings"]
    shown = ", ".join(f"{k} {settings[k]}" for k in _SETTINGS_SHOWN if k in settings)
    timing = meta["timing_s"]
    lines = [
        f"Benchmark of {meta['model']} ({meta['started']}): {meta['uploads']} JPEG uploads of "
        f"≈ {meta['megapixels']:g} MP (mean {meta['upload_mean_bytes'] / 1000:.0f} kB), gallery "
        f"of {first.gallery_items} items",
        f"service with batching on: {shown}",
        "stores: " + "; ".join(_store_line(r.store) for r in runs.values()),
        "",
    ]
    for store, run in runs.items():
        lines += _store_lines(store, run, meta)
    lines += [
        "Targets (issue 10), each a ratio of figures measured side by side in this run",
        *targets_table(targets),
        "",
        *([*int8_lines, ""] if int8_lines else []),
        f"total bench time {timing['total']:.0f} s ("
        + "; ".join(
            f"{store}: " + ", ".join(f"{k} {v:.0f} s" for k, v in run.timing_s.items())
            for store, run in runs.items()
        )
        + ")",
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
