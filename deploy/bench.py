"""``make bench``: how fast is the model, how fast is the service, and where does the time go.

    python deploy/bench.py --model models/default/embedder.onnx

In one run on the load test's photos: (a) raw ONNX Runtime embedding throughput at batch sizes
1..32 and the best of them; (b) the service's search throughput over HTTP at saturation
(closed loop, ``--clients`` concurrent senders, on its own uvicorn process with a temporary
SQLite store and a seeded gallery); their ratio; and (c) the mean time per stage (decode,
inference, index, store) from the service's ``/metrics`` over the search and an enrollment
window, so the bottleneck is visible. Finishes in about 2 minutes (bounded well under 10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (`python deploy/bench.py`): import from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from deploy.benchmark.ort_throughput import BATCH_SIZES, measure_ort_throughput
from deploy.benchmark.service_process import service_process
from deploy.benchmark.stage_metrics import (
    REQUEST_METRIC,
    STAGE_METRIC,
    StageTime,
    histogram_totals,
    window_times,
)
from deploy.loadtest.closed_loop import run_closed_loop
from deploy.loadtest.latency_stats import summarize
from deploy.loadtest.photo_set import build_photo_set
from deploy.loadtest.scenarios import EnrollScenario, SearchScenario
from deploy.loadtest.seed_gallery import SeedGallery

SEARCH_ROUTE = "/search"
ENROLL_ROUTE = "/items/{item_id}/images"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/default/embedder.onnx"))
    p.add_argument("--clients", type=int, default=8, help="concurrent closed-loop senders")
    p.add_argument("--search-seconds", type=float, default=20.0)
    p.add_argument("--enroll-seconds", type=float, default=10.0)
    p.add_argument("--warmup-seconds", type=float, default=3.0)
    p.add_argument("--ort-seconds", type=float, default=3.0, help="per batch size")
    p.add_argument("--gallery-copies", type=int, default=4, help="items per source photo")
    p.add_argument("--out", type=Path, default=Path("reports"))
    return p.parse_args(argv)


async def _metrics(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    response.raise_for_status()
    return response.text


def _window(before: str, after: str, route: str) -> dict[str, Any]:
    stages = window_times(
        histogram_totals(before, STAGE_METRIC, "stage"),
        histogram_totals(after, STAGE_METRIC, "stage"),
    )
    requests = {
        t.name: t
        for t in window_times(
            histogram_totals(before, REQUEST_METRIC, "route"),
            histogram_totals(after, REQUEST_METRIC, "route"),
        )
    }
    req = requests.get(route, StageTime(route, 0, 0.0))
    return {"request": asdict(req) | {"mean_ms": req.mean_ms}, "stages": stages}


async def _measure_service(url: str, args: argparse.Namespace) -> dict[str, Any]:
    photo_set = build_photo_set()
    photos = photo_set.all_views()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        gallery = SeedGallery(photo_set, id_prefix="bench-", copies=args.gallery_copies)
        items = await gallery.enroll(client)
        search = SearchScenario(photos)
        # Warm-up: thread pool, ORT arenas, connection pool; not measured.
        await run_closed_loop(
            client, search.operation, users=args.clients, duration_s=args.warmup_seconds
        )
        m0 = await _metrics(client)
        t0 = time.monotonic()
        samples = await run_closed_loop(
            client, search.operation, users=args.clients, duration_s=args.search_seconds
        )
        search_wall = time.monotonic() - t0
        m1 = await _metrics(client)
        enroll = EnrollScenario(photos, id_prefix="bench-e-")
        t1 = time.monotonic()
        enroll_samples = await run_closed_loop(
            client, enroll.operation, users=args.clients, duration_s=args.enroll_seconds
        )
        enroll_wall = time.monotonic() - t1
        m2 = await _metrics(client)
        await enroll.cleanup(client)
        await gallery.remove(client)
    return {
        "gallery_items": items,
        "search": summarize(samples, search_wall)[-1],
        "search_window": _window(m0, m1, SEARCH_ROUTE),
        "enroll": summarize(enroll_samples, enroll_wall)[-1],
        "enroll_window": _window(m1, m2, ENROLL_ROUTE),
    }


def _stage_table(title: str, window: dict[str, Any]) -> list[str]:
    req = window["request"]
    n = max(req["calls"], 1)
    lines = [
        f"  {title}: {req['calls']} requests, mean {req['mean_ms']:.1f} ms in the service",
        f"    {'stage':<14} {'calls':>7} {'ms/call':>9} {'ms/request':>11} {'share':>7}",
    ]
    accounted = 0.0
    for s in window["stages"]:
        per_request = 1000 * s.total_s / n
        accounted += per_request
        share = per_request / req["mean_ms"] if req["mean_ms"] else 0.0
        lines.append(
            f"    {s.name:<14} {s.calls:>7} {s.mean_ms:>9.2f} {per_request:>11.2f} {share:>7.0%}"
        )
    rest = req["mean_ms"] - accounted
    share = rest / req["mean_ms"] if req["mean_ms"] else 0.0
    lines.append(f"    {'(rest)':<14} {'':>7} {'':>9} {rest:>11.2f} {share:>7.0%}")
    lines.append(
        "    (rest = HTTP, multipart parsing, waiting for a worker thread or lock, blob writes)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = datetime.now(UTC)
    t_start = time.monotonic()
    photos = build_photo_set().all_views()
    print(
        f"(a) raw ONNX Runtime throughput, {args.ort_seconds:g} s per batch size", file=sys.stderr
    )
    ort = measure_ort_throughput(
        args.model, photos, batch_sizes=BATCH_SIZES, seconds_per_size=args.ort_seconds
    )
    best = max(ort, key=lambda b: b.images_per_s)
    print("(b, c) service over HTTP", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        service_process(args.model.resolve(), Path(tmp) / "data") as url,
    ):
        service = asyncio.run(_measure_service(url, args))
    search = service["search"]
    ratio = search.throughput_rps / best.images_per_s
    single = ort[0].images_per_s

    lines = [
        f"Benchmark of {args.model} ({started.isoformat(timespec='seconds')}), "
        f"{len(photos)} photos, gallery of {service['gallery_items']} items",
        "",
        "(a) raw ONNX Runtime embedding throughput (preprocessed input, one caller)",
        f"    {'batch':>5} {'images/s':>10}",
        *(f"    {b.batch_size:>5} {b.images_per_s:>10.1f}" for b in ort),
        f"    best: batch {best.batch_size}, {best.images_per_s:.1f} images/s",
        "",
        f"(b) service search over HTTP at saturation ({args.clients} closed-loop clients, "
        f"{args.search_seconds:g} s)",
        f"    {search.throughput_rps:.1f} searches/s, p50 {search.p50_ms:.1f} ms, "
        f"p99 {search.p99_ms:.1f} ms, errors {search.error_rate:.1%}",
        f"    ratio service / best raw ORT = {ratio:.2f}  "
        f"(/ raw ORT at batch 1: {search.throughput_rps / single:.2f})",
        f"    enrollment at saturation: {service['enroll'].throughput_rps:.1f} requests/s "
        f"(1 image each), p50 {service['enroll'].p50_ms:.1f} ms",
        "",
        "(c) time per stage, from the service's /metrics",
        *_stage_table("search window", service["search_window"]),
        *_stage_table("enrollment window", service["enroll_window"]),
        "",
        f"total bench time {time.monotonic() - t_start:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out_dir = args.out / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "model": str(args.model),
        "started": started.isoformat(timespec="seconds"),
        "ort": [asdict(b) | {"images_per_s": b.images_per_s} for b in ort],
        "ort_best": {"batch_size": best.batch_size, "images_per_s": best.images_per_s},
        "search": asdict(search),
        "search_over_ort_best": ratio,
        "enroll": asdict(service["enroll"]),
        "stages": {
            name: {
                "request": service[f"{name}_window"]["request"],
                "stages": [
                    asdict(s) | {"mean_ms": s.mean_ms} for s in service[f"{name}_window"]["stages"]
                ],
            }
            for name in ("search", "enroll")
        },
    }
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "summary.txt").write_text(text)
    print(f"report: {out_dir}/bench.json, summary.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
