"""``make bench``: issue 10's serving targets, each a ratio of two figures measured side by side
in this one run, with PASS/MISS (or INVALID: not measured as the target requires).

    python -m bench.service_bench --model models/default/embedder.onnx [--store sqlite|redis|both]

On ≈ 1 MP JPEG uploads cut from the shipped photos (bench/large_photos.py):

(a) in this process, with the service's ORT thread count, while the batching-on service idles
    right before the windows they are compared with: raw ONNX Runtime throughput at batch
    sizes 1..32 (preprocessed input); a pipeline that decodes the same JPEGs the same way in
    worker threads while ORT runs the best batch size (the serving overhead's baseline);
    decode + batch-1 inference one image at a time.
(b) the service (its own uvicorn process, a seeded gallery, a throw-away store) with batching
    on, its defaults: closed-loop searches at --saturation-clients (by default as many as its
    admission queue admits), one client at a time, closed-loop enrollments of --enroll-images
    images per request, then open loop at --baseline-load and at --overload x the saturation
    rate for --open-loop-seconds each. All measured requests are sent by a lean client
    (pre-built bodies, this one process), whose CPU share is printed.
(c) --clients closed-loop searches on batching on, on the released path (batching off; its
    defaults: 8 worker threads, each calling the session) and on one executor at batch size 1
    (same threads as batching on), each admitting all --clients at once.

Per search at saturation it prints where the machine's core time went (client, the service's
HTTP/multipart/rest, decode, inference, other processes, idle) and the wall time queued for
inference, so a miss is explained by the breakdown. An open-loop step that sent < 95 % of its
requested rate is INVALID (the generator, not the service, limited it).

--store both measures (b) and (c) on SQLite, then on a throw-away namespace of the Redis at
--redis-url, side by side. About 3 minutes with the defaults on 2 cores (6 with both).
Writes reports/bench-<UTC time>/bench.json, summary.txt and the services' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.settings import Settings
from bench.bench_summary import summary_text
from bench.inprocess_baselines import InProcessBench
from bench.large_photos import build_large_photo_set
from bench.lean_client import LeanClient
from bench.loadtest.photo_set import PhotoSet
from bench.process_cpu import usable_cores
from bench.redis_namespace import check_redis
from bench.report_files import write_report_files
from bench.run_record import InProcessBaselines, StoreRun
from bench.search_breakdown import search_breakdown
from bench.service_session import ServiceSession, SessionPlan
from bench.service_under_test import RunningService, ServiceConfig, running_service
from bench.service_window import ServiceWindow
from bench.serving_targets import serving_targets
from bench.targets import target_json
from client.api_key_header import api_key_headers

STORES = ("sqlite", "redis")
# Saturation clients for a service from before issue 10 (no admission queue to fill).
_NO_ADMISSION_CLIENTS = 16
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

BATCHING_ON = ServiceConfig(
    "on", "batching on (the service's defaults)", {"RETRIEVAL_BATCHING": "true"}
)
# The --clients comparison. Each configuration admits every client at once (the released path
# had no admission queue; today's default queue may be shorter than --clients), so the windows
# compare how the model's calls are made, not how much load is shed.
BATCHING_COMPARED = ServiceConfig(
    "compare", "batching on, every client admitted", {"RETRIEVAL_BATCHING": "true"}
)
# The released path with the released defaults, whatever today's defaults are.
BATCHING_OFF = ServiceConfig(
    "off",
    "batching off: the released path, 8 worker threads each calling the session",
    {
        "RETRIEVAL_BATCHING": "false",
        "RETRIEVAL_WORKER_THREADS": "8",
        "RETRIEVAL_INFERENCE_THREADS": "0",
        "RETRIEVAL_INFERENCE_BATCH": "32",
    },
)
BATCH_ONE = ServiceConfig(
    "batch1",
    "one executor at batch size 1, same threads as batching on",
    {"RETRIEVAL_BATCHING": "true", "RETRIEVAL_INFERENCE_BATCH": "1"},
)
# The --clients windows: StoreRun's field, and its configuration.
COMPARED = (("concurrent", BATCHING_COMPARED), ("off", BATCHING_OFF), ("batch1", BATCH_ONE))


def admitting(config: ServiceConfig, clients: int) -> ServiceConfig:
    """``config`` with an admission queue that takes ``clients`` concurrent requests."""
    return ServiceConfig(
        config.name, config.title, {**config.env, "RETRIEVAL_ADMISSION_QUEUE": str(clients)}
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.service_bench",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )

    def flag(name: str, kind: type, default: Any, text: str) -> None:
        p.add_argument(name, type=kind, default=default, help=f"{text} (default %(default)s)")

    flag(
        "--model", Path, Path("models/default/embedder.onnx"), "ONNX embedder to measure and serve"
    )
    p.add_argument(
        "--store",
        choices=(*STORES, "both"),
        default="sqlite",
        help="the service's store: a temporary SQLite file, a throw-away namespace on the Redis\n"
        "at --redis-url, or both one after the other (default %(default)s)",
    )
    flag(
        "--redis-url",
        str,
        DEFAULT_REDIS_URL,
        "Redis for --store redis/both; each service uses its own namespace there and the\n"
        "bench deletes that namespace's keys afterwards",
    )
    flag("--clients", int, 8, "concurrent closed-loop clients of the batching on/off comparison")
    flag(
        "--saturation-clients",
        int,
        0,
        "concurrent closed-loop clients of the saturation window; 0: the service's\n"
        f"admission_queue, the most requests it admits at once ({_NO_ADMISSION_CLIENTS} for a "
        "service without one)",
    )
    flag("--search-seconds", float, 15.0, "each closed-loop search window")
    flag("--single-seconds", float, 8.0, "one client at a time, over HTTP and in process")
    flag("--warmup-seconds", float, 3.0, "unmeasured searches after each service starts")
    flag("--enroll-seconds", float, 10.0, "closed-loop enrollment window")
    flag("--enroll-clients", int, 4, "concurrent enrollment clients")
    flag("--enroll-images", int, 8, "images per enrollment request")
    flag("--open-loop-seconds", float, 10.0, "each open-loop step")
    flag("--baseline-load", float, 0.7, "first open-loop step, as a share of the saturation rate")
    flag("--overload", float, 2.0, "second open-loop step, as a multiple of the saturation rate")
    flag(
        "--max-in-flight",
        int,
        512,
        "open loop: outstanding requests beyond which arrivals are dropped (and the step's\n"
        "latency target misses: the service held that many unanswered)",
    )
    flag("--timeout", float, 30.0, "per-request timeout of the lean client, seconds")
    flag("--ort-seconds", float, 2.0, "raw ONNX Runtime time per batch size")
    flag("--pipeline-seconds", float, 8.0, "in-process decode + inference pipeline window")
    flag("--gallery-copies", int, 2, "seed gallery: items per source photo, 8 photos")
    flag("--photo-views", int, 4, "uploads per source photo, 8 photos")
    flag("--megapixels", float, 1.0, "size of each upload")
    flag(
        "--int8-model",
        Path,
        None,
        "an INT8 twin of --model: also print its raw ORT speed-up and the retrieval change\n"
        "(bench/int8_speedup.py, on its own photos and folder; needs the training kit)",
    )
    flag("--out", Path, Path("reports"), "parent of the report directory")
    return p


def _parse(argv: list[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def _settings(config: ServiceConfig, model: Path) -> Settings:
    """The settings the service will read under ``config`` (this process's environment plus
    the config's overrides): the in-process baselines use its ORT threads and limits."""
    fields = Settings.model_fields
    overrides: dict[str, Any] = {
        key: value
        for name, value in config.env.items()
        if (key := name.removeprefix("RETRIEVAL_").lower()) in fields
    }
    return Settings(model_path=model, **overrides)


def _ort_threads(settings: Settings) -> int:
    """The executor's ORT threads, resolved (0 is ORT's default, one per core)."""
    return settings.inference_threads or usable_cores()


def _measure_int8(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """The INT8 twin's speed-up and retrieval change, as summary lines and report JSON."""
    # Imported only when asked: it needs the training kit (torch), which the rest of the bench
    # does not, and by name, so that the strict type check of this torch-free module does not
    # follow it into model/.
    int8_speedup = importlib.import_module("bench.int8_speedup")
    _log(f"(a) INT8 twin {args.int8_model}: speed-up and retrieval change")
    result = int8_speedup.run(
        args.model, args.int8_model, folder=None, seconds=args.ort_seconds, rounds=1
    )
    fp32, int8, one = result.best_fp32, result.best_int8, result.rates[0]
    a, b = result.fp32_recall, result.int8_recall
    lines = [
        f"INT8 twin {args.int8_model} (bench/int8_speedup.py: raw ORT, ORT's default threads)",
        f"    speed-up at the best batch {result.best_speedup:.2f}x (INT8 {int8.int8:.1f} "
        f"images/s at batch {int8.batch_size} / FP32 {fp32.fp32:.1f} at batch "
        f"{fp32.batch_size}); at batch {one.batch_size} {one.speedup:.2f}x",
        f"    embeddings to FP32's: {result.photos}",
        f"    centroid Recall@1 on {a.num_queries} queries / {a.num_items} items: FP32 "
        f"{a.recall_at_1:.4f}, INT8 {b.recall_at_1:.4f}, change {result.recall_change:+.4f}",
    ]
    data: dict[str, Any] = json.loads(int8_speedup.report_json(result))
    return lines, data


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _service(
    args: argparse.Namespace, store: str, config: ServiceConfig, log_dir: Path
) -> AbstractContextManager[RunningService]:
    return running_service(args.model, store, config, log_dir=log_dir, redis_url=args.redis_url)


def _plan(args: argparse.Namespace) -> SessionPlan:
    return SessionPlan(
        warmup_s=args.warmup_seconds,
        search_s=args.search_seconds,
        single_s=args.single_seconds,
        enroll_s=args.enroll_seconds,
        enroll_clients=args.enroll_clients,
        enroll_images=args.enroll_images,
        open_loop_s=args.open_loop_seconds,
        max_in_flight=args.max_in_flight,
        gallery_copies=args.gallery_copies,
    )


async def _open_session(
    url: str, pid: int, store: str, photos: PhotoSet, args: argparse.Namespace
) -> tuple[httpx.AsyncClient, ServiceSession]:
    client = httpx.AsyncClient(base_url=url, timeout=60, headers=api_key_headers())
    info = (await client.get("/info")).raise_for_status().json()
    if info["store_backend"] != store:
        # A stray setting must not get one store's figures reported as the other's.
        await client.aclose()
        raise RuntimeError(f"asked for the {store} store, got {info['store_backend']}")
    session = ServiceSession(
        client, LeanClient(url, timeout_s=args.timeout), pid, photos, _plan(args)
    )
    return client, session


def _window_line(name: str, w: ServiceWindow) -> None:
    s = w.stats
    _log(
        f"    {name}: {s.throughput_rps:.1f}/s ok, p50 {s.p50_ms:.1f} ms, p95 {s.p95_ms:.1f} ms, "
        f"errors {s.errors}, mean batch {w.batching.mean_batch_size:.1f}, "
        f"client cpu {w.cpu.client_share:.0%}"
    )


async def _batching_on(
    url: str,
    pid: int,
    store: str,
    photos: PhotoSet,
    args: argparse.Namespace,
    settings: Settings,
) -> dict[str, Any]:
    client, session = await _open_session(url, pid, store, photos, args)
    try:
        out: dict[str, Any] = {"gallery_items": await session.seed()}
        await session.warm_up(args.saturation_clients)
        # The in-process figures right before the windows they are compared with, while the
        # service idles: a neighbour's burst on a shared machine then hits both alike.
        inproc = InProcessBench(args.model, settings, photos.all_views())
        _log(f"(a) raw ORT, {args.ort_seconds:g} s per batch size, and the pipeline")
        raw, ceiling, pipeline = await asyncio.to_thread(
            inproc.throughput, ort_seconds=args.ort_seconds, pipeline_seconds=args.pipeline_seconds
        )
        out["saturation"] = await session.closed_search(
            args.saturation_clients, args.search_seconds
        )
        _window_line(f"search, {args.saturation_clients} clients", out["saturation"])
        _log(f"(a) one image at a time, {args.single_seconds:g} s")
        single = await asyncio.to_thread(inproc.single, seconds=args.single_seconds)
        out["inproc"] = InProcessBaselines(_ort_threads(settings), raw, ceiling, pipeline, single)
        out["one_client"] = await session.closed_search(1, args.single_seconds)
        _window_line("search, 1 client", out["one_client"])
        out["enroll"] = await session.enrollment()
        _window_line(f"enrollment, {args.enroll_clients} clients", out["enroll"])
        rate = out["saturation"].stats.throughput_rps
        if rate <= 0:
            raise RuntimeError("no search was answered 2xx: see the service log in the report")
        for key, load in (("baseline", args.baseline_load), ("overload", args.overload)):
            out[key] = await session.open_step(load * rate)
            step = out[key].step
            _log(
                f"    open loop {step.requested_rps:.1f}/s: sent {step.achieved_rps:.1f}/s, "
                f"accepted {step.accepted}, p99 {step.accepted_p99_ms:.1f} ms, "
                f"503 {step.rejected}"
            )
        return out
    finally:
        await session.close()
        await client.aclose()


async def _compare(
    url: str, pid: int, store: str, photos: PhotoSet, args: argparse.Namespace
) -> ServiceWindow:
    client, session = await _open_session(url, pid, store, photos, args)
    try:
        await session.seed()
        await session.warm_up(args.clients)
        window = await session.closed_search(args.clients, args.search_seconds)
        _window_line(f"search, {args.clients} clients", window)
        return window
    finally:
        await session.close()
        await client.aclose()


def _measure_store(
    args: argparse.Namespace,
    store: str,
    photos: PhotoSet,
    settings: Settings,
    has_batching: bool,
    log_dir: Path,
) -> StoreRun:
    timing: dict[str, float] = {}
    infos: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    _log(f"(b) service, {BATCHING_ON.title}, {store} store")
    with _service(args, store, BATCHING_ON, log_dir) as service:
        infos["on"] = service.store
        on = asyncio.run(_batching_on(service.url, service.pid, store, photos, args, settings))
    timing["batching_on"] = time.monotonic() - t0
    compared = {}
    for key, base in COMPARED:
        config = admitting(base, args.clients)
        t1 = time.monotonic()
        _log(f"(c) service, {config.title}, {store} store")
        with _service(args, store, config, log_dir) as service:
            infos[config.name] = service.store
            compared[key] = asyncio.run(_compare(service.url, service.pid, store, photos, args))
        timing[f"batching_{config.name}"] = time.monotonic() - t1
    timing["total"] = time.monotonic() - t0
    return StoreRun(
        store=infos["on"],
        stores=infos,
        inproc=on["inproc"],
        gallery_items=on["gallery_items"],
        has_batching=has_batching,
        saturation=on["saturation"],
        concurrent=compared["concurrent"],
        one_client=on["one_client"],
        enroll=on["enroll"],
        enroll_images=args.enroll_images,
        baseline=on["baseline"],
        overload=on["overload"],
        off=compared["off"],
        batch1=compared["batch1"],
        timing_s=timing,
    )


def _inproc_json(inproc: InProcessBaselines) -> dict[str, Any]:
    return {
        "ort_threads": inproc.ort_threads,
        "raw_ort": [asdict(b) | {"images_per_s": b.images_per_s} for b in inproc.raw],
        "raw_ort_ceiling": [asdict(b) | {"images_per_s": b.images_per_s} for b in inproc.ceiling],
        "raw_ort_best": asdict(inproc.best) | {"images_per_s": inproc.best.images_per_s},
        "pipeline": asdict(inproc.pipeline) | {"images_per_s": inproc.pipeline.images_per_s},
        "single_image": asdict(inproc.single),
    }


def _store_json(run: StoreRun, ort_threads: int) -> dict[str, Any]:
    windows = ("saturation", "concurrent", "one_client", "enroll", "off", "batch1")
    return {
        "in_process": _inproc_json(run.inproc),
        "store": run.store,
        "stores": run.stores,
        "gallery_items": run.gallery_items,
        "has_batching": run.has_batching,
        "saturation_rps": run.saturation_rps,
        "enroll_images": run.enroll_images,
        "enroll_images_per_s": run.enroll_images_per_s,
        "windows": {name: getattr(run, name).to_json() for name in windows},
        "open_loop": {
            name: asdict(getattr(run, name).step) | {"window": getattr(run, name).window.to_json()}
            for name in ("baseline", "overload")
        },
        "breakdown": asdict(search_breakdown(run.saturation, run.inproc, ort_threads=ort_threads)),
        "timing_s": run.timing_s,
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
    out_dir = args.out / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = build_large_photo_set(args.photo_views, megapixels=args.megapixels)
    bodies = photos.all_views()
    settings = _settings(BATCHING_ON, args.model)
    has_batching = "batching" in Settings.model_fields
    if args.saturation_clients <= 0:
        # Saturation = the admission queue kept full: more clients would only collect 503s.
        args.saturation_clients = getattr(settings, "admission_queue", _NO_ADMISSION_CLIENTS)
    int8 = _measure_int8(args) if args.int8_model is not None else None
    timing = {"int8": time.monotonic() - t_start} if int8 else {}
    # One store after the other, never at once: each gets the whole machine.
    runs = {
        store: _measure_store(args, store, photos, settings, has_batching, out_dir)
        for store in stores
    }
    targets = {store: serving_targets(run) for store, run in runs.items()}
    timing["total"] = time.monotonic() - t_start
    ort_threads = _ort_threads(settings)
    meta = {
        "model": str(args.model),
        "started": started.isoformat(timespec="seconds"),
        "uploads": len(bodies),
        "upload_mean_bytes": sum(map(len, bodies)) / len(bodies),
        "megapixels": args.megapixels,
        "settings": {
            k: v
            for k, v in settings.model_dump(mode="json").items()
            if k not in ("redis_url", "model_path", "data_dir")
        },
        "has_batching": has_batching,
        "ort_threads": ort_threads,
        "clients": args.clients,
        "saturation_clients": args.saturation_clients,
        "enroll_clients": args.enroll_clients,
        "stores": stores,
        "timing_s": timing,
    }
    text = summary_text(meta, runs, targets, int8_lines=int8[0] if int8 else [])
    print(text)
    report = {
        **meta,
        "services": {store: _store_json(run, ort_threads) for store, run in runs.items()},
        "targets": {store: [target_json(t) for t in ts] for store, ts in targets.items()},
        "int8": int8[1] if int8 else None,
    }
    write_report_files(out_dir, "bench.json", report, text)
    _log(f"report: {out_dir}/bench.json, summary.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
