"""``make bench``: how fast is the model, how fast is the service, and where does the time go.

    python -m bench.service_bench --model models/default/embedder.onnx [--store sqlite|redis|both]

In one run on the load test's photos: (a) raw ONNX Runtime embedding throughput at batch sizes
1..32 and the best of them; (b) the service's search throughput over HTTP at saturation
(closed loop, ``--clients`` concurrent senders, on its own uvicorn process with a seeded
gallery), their ratio, and the bench client's own CPU use in that window (the client shares
the machine's cores with the service, so a busy client caps the figure); and (c) the mean time
per stage (decode, inference, index, store) from the service's ``/metrics`` over the search
and an enrollment window, so the bottleneck is visible.

The store is thrown away afterwards: a temporary SQLite file (``--store sqlite``), or a fresh
namespace on the Redis at ``--redis-url`` whose keys are deleted when the run ends
(``--store redis``); ``--store both`` measures (b) and (c) on each, one after the other, and
prints them side by side. With the defaults on 2 cores it takes about a minute: about 20 s for
(a), then about 36 s per store (the 3 + 20 + 10 s windows plus start-up, seeding and cleanup),
so about 1.5 minutes with ``both``; well under 10 minutes either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.loadtest.closed_loop import run_closed_loop
from bench.loadtest.latency_stats import EndpointStats, summarize
from bench.loadtest.level_result import CLIENT_CPU_WARNING
from bench.loadtest.photo_set import build_photo_set
from bench.loadtest.request_sample import Operation
from bench.loadtest.scenarios import EnrollScenario, SearchScenario
from bench.loadtest.seed_gallery import SeedGallery
from bench.ort_throughput import BATCH_SIZES, BatchThroughput, measure_ort_throughput
from bench.redis_namespace import check_redis, redact_url, throwaway_namespace
from bench.service_process import service_process
from bench.stage_metrics import (
    REQUEST_METRIC,
    STAGE_METRIC,
    StageTime,
    histogram_totals,
    window_times,
)

SEARCH_ROUTE = "/search"
ENROLL_ROUTE = "/items/{item_id}/images"
STORES = ("sqlite", "redis")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.service_bench",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument(
        "--model",
        type=Path,
        default=Path("models/default/embedder.onnx"),
        help="ONNX embedder to measure and serve (default %(default)s)",
    )
    p.add_argument(
        "--store",
        choices=(*STORES, "both"),
        default="sqlite",
        help="the service's store: a temporary SQLite file, a throw-away namespace on the Redis\n"
        "at --redis-url, or both one after the other (default %(default)s)",
    )
    p.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help="Redis for --store redis/both; the run uses its own namespace there and deletes\n"
        "that namespace's keys at the end (default %(default)s)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=8,
        help="concurrent closed-loop senders (default %(default)d)",
    )
    p.add_argument(
        "--search-seconds",
        type=float,
        default=20.0,
        help="measured search window (default %(default)g)",
    )
    p.add_argument(
        "--enroll-seconds",
        type=float,
        default=10.0,
        help="measured enrollment window (default %(default)g)",
    )
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=3.0,
        help="unmeasured searches before the search window (default %(default)g)",
    )
    p.add_argument(
        "--ort-seconds",
        type=float,
        default=3.0,
        help="raw ONNX Runtime time per batch size (default %(default)g)",
    )
    p.add_argument(
        "--gallery-copies",
        type=int,
        default=4,
        help="seed gallery: items per source photo, 8 photos (default %(default)d)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        help="parent of the report directory (default %(default)s)",
    )
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


@dataclass(frozen=True)
class ClientWindow:
    """One closed-loop window as the bench client saw it. ``cpu_s``: the bench process's CPU
    time (``time.process_time``) over ``wall_s``."""

    stats: EndpointStats
    wall_s: float
    cpu_s: float

    @property
    def cpu_share(self) -> float:
        """CPU seconds per wall second; 1.0 = one core fully busy."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def client_bound(self) -> bool:
        return self.cpu_share >= CLIENT_CPU_WARNING


async def _closed_window(
    client: httpx.AsyncClient,
    operation_at: Callable[[int], Operation],
    *,
    users: int,
    seconds: float,
) -> ClientWindow:
    wall0, cpu0 = time.monotonic(), time.process_time()
    samples = await run_closed_loop(client, operation_at, users=users, duration_s=seconds)
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    return ClientWindow(summarize(samples, wall)[-1], wall, cpu)


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


async def _measure_service(url: str, store: str, args: argparse.Namespace) -> dict[str, Any]:
    photo_set = build_photo_set()
    photos = photo_set.all_views()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        info = (await client.get("/info")).raise_for_status().json()
        if info["store_backend"] != store:
            # A stray setting must not get one store's figures reported as the other's.
            raise RuntimeError(f"asked for the {store} store, got {info['store_backend']}")
        t0 = time.monotonic()
        gallery = SeedGallery(photo_set, id_prefix="bench-", copies=args.gallery_copies)
        items = await gallery.enroll(client)
        seed_s = time.monotonic() - t0
        search = SearchScenario(photos)
        # Warm-up: thread pool, ORT arenas, connection pool; not measured.
        await run_closed_loop(
            client, search.operation, users=args.clients, duration_s=args.warmup_seconds
        )
        m0 = await _metrics(client)
        search_run = await _closed_window(
            client, search.operation, users=args.clients, seconds=args.search_seconds
        )
        m1 = await _metrics(client)
        enroll = EnrollScenario(photos, id_prefix="bench-e-")
        enroll_run = await _closed_window(
            client, enroll.operation, users=args.clients, seconds=args.enroll_seconds
        )
        m2 = await _metrics(client)
        # Not strictly needed (the store is thrown away), but leaves the service as found.
        await enroll.cleanup(client)
        await gallery.remove(client)
    return {
        "gallery_items": items,
        "seed_s": seed_s,
        "search": search_run,
        "search_window": _window(m0, m1, SEARCH_ROUTE),
        "enroll": enroll_run,
        "enroll_window": _window(m1, m2, ENROLL_ROUTE),
    }


@contextmanager
def _service(args: argparse.Namespace, store: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The service on a throw-away ``store``; yields its URL and what the report says about
    the store. The service stops before its Redis keys are deleted."""
    model = args.model.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        data_dir = Path(tmp) / "data"
        if store == "sqlite":
            with service_process(model, data_dir) as url:
                yield url, {"backend": "sqlite", "path": "temporary SQLite file"}
            return
        with throwaway_namespace(args.redis_url) as ns:
            info: dict[str, Any] = {
                "backend": "redis",
                "url": redact_url(args.redis_url),
                "namespace": ns.name,
            }
            with service_process(
                model, data_dir, redis_url=args.redis_url, redis_namespace=ns.name
            ) as url:
                yield url, info
        info["keys_deleted"] = ns.keys_deleted


def _store_line(info: dict[str, Any]) -> str:
    if info["backend"] == "redis":
        return (
            f"redis = {info['url']}, namespace {info['namespace']} "
            f"({info.get('keys_deleted')} keys deleted afterwards)"
        )
    return "sqlite = embedded store in a temporary SQLite file"


def _client_table(title: str, unit: str, runs: dict[str, ClientWindow]) -> list[str]:
    lines = [
        f"    {title}",
        f"    {'store':<8} {unit:>11} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'client cpu':>11}",
    ]
    for store, run in runs.items():
        s = run.stats
        flag = "  CLIENT-BOUND" if run.client_bound else ""
        lines.append(
            f"    {store:<8} {s.throughput_rps:>11.1f} {s.p50_ms:>9.1f} {s.p99_ms:>9.1f} "
            f"{s.error_rate:>7.1%} {run.cpu_share:>11.0%}{flag}"
        )
    return lines


# Width of one store's columns in the stage table (calls, ms/call, ms/request, share).
_CELL = 34


def _requests_cell(request: dict[str, Any]) -> str:
    return f"{request['calls']} requests, mean {request['mean_ms']:.1f} ms"


def _stage_table(title: str, windows: dict[str, dict[str, Any]]) -> list[str]:
    """One stage per row, one block of columns per store, so stores compare side by side."""
    stores = list(windows)
    lines = [
        f"  {title}",
        f"    {'':<14}" + "".join(f"  {store:^{_CELL}}" for store in stores),
        f"    {'':<14}"
        + "".join(f"  {_requests_cell(windows[s]['request']):^{_CELL}}" for s in stores),
        f"    {'stage':<14}"
        + "".join(f"  {'calls':>7} {'ms/call':>9} {'ms/req':>9} {'share':>6}" for _ in stores),
    ]
    names = list(dict.fromkeys(s.name for w in windows.values() for s in w["stages"]))
    accounted = dict.fromkeys(stores, 0.0)
    for name in names:
        cells = []
        for store in stores:
            req = windows[store]["request"]
            stage = next((s for s in windows[store]["stages"] if s.name == name), None)
            if stage is None:
                cells.append(f"{'-':>{_CELL}}")
                continue
            per_request = 1000 * stage.total_s / max(req["calls"], 1)
            accounted[store] += per_request
            share = per_request / req["mean_ms"] if req["mean_ms"] else 0.0
            cells.append(
                f"{stage.calls:>7} {stage.mean_ms:>9.2f} {per_request:>9.2f} {share:>6.0%}"
            )
        lines.append(f"    {name:<14}" + "".join(f"  {c}" for c in cells))
    rest_cells = []
    for store in stores:
        mean = windows[store]["request"]["mean_ms"]
        rest = mean - accounted[store]
        share = rest / mean if mean else 0.0
        rest_cells.append(f"{'':>7} {'':>9} {rest:>9.2f} {share:>6.0%}")
    lines.append(f"    {'(rest)':<14}" + "".join(f"  {c}" for c in rest_cells))
    return lines


def _measure_store(args: argparse.Namespace, store: str) -> dict[str, Any]:
    print(f"(b, c) service over HTTP, {store} store", file=sys.stderr)
    t0 = time.monotonic()
    with _service(args, store) as (url, info):
        start_s = time.monotonic() - t0
        result = asyncio.run(_measure_service(url, store, args))
    result["store"] = info
    result["timing_s"] = {
        "service_start": start_s,
        "seed": result.pop("seed_s"),
        "total": time.monotonic() - t0,
    }
    return result


def _summary(
    args: argparse.Namespace,
    started: datetime,
    photos: int,
    ort: list[BatchThroughput],
    services: dict[str, dict[str, Any]],
    timing: dict[str, float],
) -> str:
    best = max(ort, key=lambda b: b.images_per_s)
    single = ort[0].images_per_s
    sizes = {name: s["gallery_items"] for name, s in services.items()}
    gallery = (
        f"{next(iter(sizes.values()))} items"
        if len(set(sizes.values())) == 1
        else ", ".join(f"{n} {size} items" for n, size in sizes.items())
    )
    lines = [
        f"Benchmark of {args.model} ({started.isoformat(timespec='seconds')}), "
        f"{photos} photos, gallery of {gallery}",
        "stores: " + "; ".join(_store_line(s["store"]) for s in services.values()),
        "",
        "(a) raw ONNX Runtime embedding throughput (preprocessed input, one caller)",
        f"    {'batch':>5} {'images/s':>10}",
        *(f"    {b.batch_size:>5} {b.images_per_s:>10.1f}" for b in ort),
        f"    best: batch {best.batch_size}, {best.images_per_s:.1f} images/s",
        "",
        f"(b) service over HTTP at saturation ({args.clients} closed-loop clients)",
        *_client_table(
            f"search, {args.search_seconds:g} s",
            "searches/s",
            {name: s["search"] for name, s in services.items()},
        ),
        *(
            f"    {name}: ratio service / best raw ORT = "
            f"{s['search'].stats.throughput_rps / best.images_per_s:.2f}  "
            f"(/ raw ORT at batch 1: {s['search'].stats.throughput_rps / single:.2f})"
            for name, s in services.items()
        ),
        *_client_table(
            f"enrollment (1 image per request), {args.enroll_seconds:g} s",
            "requests/s",
            {name: s["enroll"] for name, s in services.items()},
        ),
        "    client cpu = this bench process's CPU time per wall second in the window (100 % =",
        "    one core). It shares the cores with the service: CLIENT-BOUND (>= "
        f"{CLIENT_CPU_WARNING:.0%}) means the",
        "    client may be what limits the figure, not the service.",
        "",
        "(c) time per stage, from the service's /metrics (ms/req = stage time per request;",
        "    share = of the request's mean time in the service)",
        *_stage_table("search window", {n: s["search_window"] for n, s in services.items()}),
        *_stage_table("enrollment window", {n: s["enroll_window"] for n, s in services.items()}),
        "    (rest = HTTP, multipart parsing, waiting for a worker thread or lock, and any work",
        "    without a stage of its own)",
        "",
        f"total bench time {timing['total']:.0f} s (raw ORT {timing['ort']:.0f} s; "
        + "; ".join(
            f"{name}: service start {s['timing_s']['service_start']:.0f} s, "
            f"seeding {s['timing_s']['seed']:.0f} s, all {s['timing_s']['total']:.0f} s"
            for name, s in services.items()
        )
        + ")",
    ]
    # Centred column headings would leave trailing blanks.
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _stages_json(window: dict[str, Any]) -> dict[str, Any]:
    return {
        "request": window["request"],
        "stages": [asdict(s) | {"mean_ms": s.mean_ms} for s in window["stages"]],
    }


def _service_json(service: dict[str, Any], best: BatchThroughput, single: float) -> dict[str, Any]:
    search: ClientWindow = service["search"]
    enroll: ClientWindow = service["enroll"]
    return {
        "store": service["store"],
        "gallery_items": service["gallery_items"],
        "search": asdict(search.stats),
        "search_over_ort_best": search.stats.throughput_rps / best.images_per_s,
        "search_over_ort_batch1": search.stats.throughput_rps / single,
        "search_client": {"cpu_s": search.cpu_s, "wall_s": search.wall_s}
        | {"cpu_share": search.cpu_share, "client_bound": search.client_bound},
        "enroll": asdict(enroll.stats),
        "enroll_client": {"cpu_s": enroll.cpu_s, "wall_s": enroll.wall_s}
        | {"cpu_share": enroll.cpu_share, "client_bound": enroll.client_bound},
        "stages": {
            "search": _stages_json(service["search_window"]),
            "enroll": _stages_json(service["enroll_window"]),
        },
        "timing_s": service["timing_s"],
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    stores = list(STORES) if args.store == "both" else [args.store]
    if "redis" in stores:
        try:
            check_redis(args.redis_url)  # now, not after (a) has run
        except RuntimeError as exc:
            raise SystemExit(f"bench: {exc}") from None
    started = datetime.now(UTC)
    t_start = time.monotonic()
    photos = build_photo_set().all_views()
    print(
        f"(a) raw ONNX Runtime throughput, {args.ort_seconds:g} s per batch size", file=sys.stderr
    )
    ort = measure_ort_throughput(
        args.model, photos, batch_sizes=BATCH_SIZES, seconds_per_size=args.ort_seconds
    )
    timing = {"ort": time.monotonic() - t_start}
    best = max(ort, key=lambda b: b.images_per_s)
    # One store after the other, never at once: each gets the whole machine.
    services = {store: _measure_store(args, store) for store in stores}
    timing["total"] = time.monotonic() - t_start

    text = _summary(args, started, len(photos), ort, services, timing)
    print(text)
    out_dir = args.out / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "model": str(args.model),
        "started": started.isoformat(timespec="seconds"),
        "clients": args.clients,
        "stores": stores,
        "ort": [asdict(b) | {"images_per_s": b.images_per_s} for b in ort],
        "ort_best": {"batch_size": best.batch_size, "images_per_s": best.images_per_s},
        "services": {
            name: _service_json(s, best, ort[0].images_per_s) for name, s in services.items()
        },
        "timing_s": timing,
    }
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "summary.txt").write_text(text)
    print(f"report: {out_dir}/bench.json, summary.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
