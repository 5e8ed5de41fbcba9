"""``python -m deploy.loadtest --url URL``: open-loop load test of a running service.

For each scenario (search, enroll, 90/10 mix) and each offered load, requests are sent at a
constant arrival rate for ``--duration`` seconds and timed from their scheduled send time.
Writes ``<out>/loadtest-<timestamp>/report.json``, ``summary.txt`` and ``latency.png``.
Total run time is at most about scenarios x levels x (duration + timeout), plus seeding.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from deploy.loadtest.latency_plot import plot_latency
from deploy.loadtest.level_result import LevelResult
from deploy.loadtest.level_runner import run_level
from deploy.loadtest.photo_set import build_photo_set
from deploy.loadtest.report_writer import summary_text, write_report
from deploy.loadtest.scenarios import EnrollScenario, MixScenario, Scenario, SearchScenario
from deploy.loadtest.seed_gallery import SeedGallery

# Pause between levels so one level's backlog does not spill into the next one's window.
_SETTLE_S = 1.0


def _scenario_factories(photos: list[bytes], id_prefix: str) -> dict[str, Callable[[], Scenario]]:
    return {
        "search": lambda: SearchScenario(photos),
        "enroll": lambda: EnrollScenario(photos, id_prefix=id_prefix),
        "mix": lambda: MixScenario(
            SearchScenario(photos), EnrollScenario(photos, id_prefix=id_prefix), enroll_every=10
        ),
    }


def _csv_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m deploy.loadtest", description=__doc__)
    p.add_argument("--url", required=True, help="base URL of the service")
    p.add_argument(
        "--levels",
        type=_csv_floats,
        default=[2.0, 5.0, 10.0, 20.0],
        help="offered loads in requests/s, comma separated (default 2,5,10,20)",
    )
    p.add_argument("--duration", type=float, default=15.0, help="seconds per level")
    p.add_argument(
        "--scenarios",
        default="search,enroll,mix",
        help="comma separated, from: search, enroll, mix",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="outstanding requests beyond which arrivals are dropped (errors)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument("--views-per-photo", type=int, default=4)
    p.add_argument(
        "--gallery-copies",
        type=int,
        default=4,
        help="seed gallery: this many items per source photo (8 photos)",
    )
    p.add_argument("--seed", type=int, default=0, help="photo augmentation seed")
    p.add_argument("--out", type=Path, default=Path("reports"), help="parent of the report dir")
    return p.parse_args(argv)


async def _wait_ready(client: httpx.AsyncClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{client.base_url}/readyz did not answer 200 within {timeout_s} s")
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[LevelResult]]:
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    photo_set = build_photo_set(args.views_per_photo, args.seed)
    photos = photo_set.all_views()
    run_id = uuid.uuid4().hex[:8]
    factories = _scenario_factories(photos, f"lt-{run_id}-")
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {sorted(factories)}")
    limits = httpx.Limits(
        max_connections=args.max_in_flight, max_keepalive_connections=args.max_in_flight
    )
    results: list[LevelResult] = []
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as client:
        await _wait_ready(client, 60)
        gallery = SeedGallery(photo_set, id_prefix=f"lt-{run_id}-", copies=args.gallery_copies)
        try:
            gallery_items = await gallery.enroll(client)
            print(f"seeded {gallery_items} gallery items", file=sys.stderr)
            for name in names:
                scenario = factories[name]()
                for rate in args.levels:
                    result = await run_level(
                        client,
                        scenario,
                        rate_per_s=rate,
                        duration_s=args.duration,
                        max_in_flight=args.max_in_flight,
                    )
                    results.append(result)
                    overall = result.endpoints[-1]
                    print(
                        f"{name:<8} {rate:>6g}/s  ok {overall.throughput_rps:6.1f}/s  "
                        f"p50 {overall.p50_ms:7.1f} ms  p99 {overall.p99_ms:7.1f} ms  "
                        f"errors {overall.error_rate:6.1%}  client cpu "
                        f"{result.client_cpu_share:4.0%}",
                        file=sys.stderr,
                    )
                    await asyncio.sleep(_SETTLE_S)
        finally:
            await gallery.remove(client)
    meta = {
        "url": args.url,
        "started": "",
        "generator": "open loop, constant arrival rate, latency from scheduled send time",
        "levels_rps": args.levels,
        "duration_s": args.duration,
        "max_in_flight": args.max_in_flight,
        "timeout_s": args.timeout,
        "scenarios": names,
        "photos": len(photos),
        "gallery_items": gallery_items,
        "run_id": run_id,
    }
    return meta, results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = datetime.now(UTC)
    planned = len(args.levels) * len(args.scenarios.split(",")) * (args.duration + _SETTLE_S)
    print(f"load test of {args.url}: about {planned:.0f} s of load", file=sys.stderr)
    meta, results = asyncio.run(run(args))
    meta["started"] = started.isoformat(timespec="seconds")
    out_dir = args.out / f"loadtest-{started.strftime('%Y%m%dT%H%M%SZ')}"
    write_report(out_dir, meta, results)
    plot_latency(results, out_dir / "latency.png")
    print(summary_text(meta, results))
    print(f"report: {out_dir}/report.json, summary.txt, latency.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
