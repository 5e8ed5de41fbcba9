"""``python -m bench.loadtest --url URL``: open-loop load test of a running service.

For each scenario (search, enroll, 90/10 mix) and each offered load, requests are sent at a
constant arrival rate for ``--duration`` seconds and timed from their scheduled send time.
Writes ``<out>/loadtest-<timestamp>/report.json``, ``summary.txt`` and ``latency.png``.
Total run time is at most about scenarios x levels x (duration + timeout), plus seeding and
cleanup (one more ``--timeout`` if some enrollment was never answered: it may commit late).

Every item the run enrolls (seed gallery and enrollments) is deleted again, also when the run
fails or is interrupted (Ctrl-C: exit status 130, no report); the exit status is 1 if some
could not be removed (their ids are printed and, after a complete run, listed in the report's
``meta.cleanup``).

A service with API keys: put a key with the read and write scopes in the environment as
CENTROID_RETRIEVAL_API_KEY=cr_... (sent as ``Authorization: Bearer``; not a flag: flags show in
the process list).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.loadtest.item_ledger import CleanupReport, ItemLedger
from bench.loadtest.latency_plot import plot_latency
from bench.loadtest.level_result import LevelResult
from bench.loadtest.level_runner import run_level
from bench.loadtest.photo_set import build_photo_set
from bench.loadtest.report_writer import summary_text, write_report
from bench.loadtest.scenarios import EnrollScenario, MixScenario, Scenario, SearchScenario
from bench.loadtest.seed_gallery import SeedGallery
from client.api_key_header import api_key_headers

# Pause between levels so one level's backlog does not spill into the next one's window.
_SETTLE_S = 1.0


def _scenario_factories(
    photos: list[bytes], id_prefix: str, ledger: ItemLedger
) -> dict[str, Callable[[], Scenario]]:
    def enroll() -> EnrollScenario:
        return EnrollScenario(photos, id_prefix=id_prefix, ledger=ledger)

    return {
        "search": lambda: SearchScenario(photos),
        "enroll": enroll,
        "mix": lambda: MixScenario(SearchScenario(photos), enroll(), enroll_every=10),
    }


def _csv_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", required=True, help="base URL of the service")
    p.add_argument(
        "--levels",
        type=_csv_floats,
        default=[2.0, 5.0, 10.0, 20.0],
        help="offered loads in requests/s, comma separated (default 2,5,10,20)",
    )
    p.add_argument(
        "--duration", type=float, default=15.0, help="seconds per level (default %(default)g)"
    )
    p.add_argument(
        "--scenarios",
        default="search,enroll,mix",
        help="comma separated, from: search, enroll, mix (default %(default)s)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="outstanding requests beyond which arrivals are dropped and counted as errors "
        "(default %(default)d)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="per-request timeout, seconds; also how long cleanup waits before deleting "
        "unanswered enrollments once more, in case they commit late (default %(default)g)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for /readyz to answer 200 before starting; the service is not "
        "ready until its index is rebuilt from the store, which compose allows 300 s for "
        "(API_START_PERIOD) (default %(default)g)",
    )
    p.add_argument(
        "--views-per-photo",
        type=int,
        default=4,
        help="augmented views sent per source photo, 8 photos (default %(default)d)",
    )
    p.add_argument(
        "--gallery-copies",
        type=int,
        default=4,
        help="seed gallery: this many items per source photo (default %(default)d)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="photo augmentation seed (default %(default)d)"
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
    ledger = ItemLedger()
    factories = _scenario_factories(photos, f"lt-{run_id}-", ledger)
    unknown = sorted(set(names) - set(factories))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {sorted(factories)}")
    limits = httpx.Limits(
        max_connections=args.max_in_flight, max_keepalive_connections=args.max_in_flight
    )
    results: list[LevelResult] = []
    async with httpx.AsyncClient(
        base_url=args.url, timeout=args.timeout, limits=limits, headers=api_key_headers()
    ) as client:
        await _wait_ready(client, args.ready_timeout)
        gallery = SeedGallery(
            photo_set, id_prefix=f"lt-{run_id}-", copies=args.gallery_copies, ledger=ledger
        )
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
            # Whatever happened above, every id the run sent is deleted (or reported).
            cleanup = await ledger.sweep(
                client, grace_s=args.timeout, log=lambda m: print(m, file=sys.stderr)
            )
            _print_cleanup(cleanup)
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
        "cleanup": asdict(cleanup),
    }
    return meta, results


def _print_cleanup(cleanup: CleanupReport) -> None:
    line = f"cleanup: {cleanup.deleted} of {cleanup.tracked} tracked items deleted"
    if cleanup.not_removed:
        shown = ", ".join(cleanup.not_removed_ids)
        more = cleanup.not_removed - len(cleanup.not_removed_ids)
        line += (
            f"; WARNING: {cleanup.not_removed} could not be removed and may remain on the "
            f"service: {shown}" + (f" (and {more} more)" if more > 0 else "")
        )
    else:
        line += ", none left behind"
    print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = datetime.now(UTC)
    planned = len(args.levels) * len(args.scenarios.split(",")) * (args.duration + _SETTLE_S)
    print(f"load test of {args.url}: about {planned:.0f} s of load", file=sys.stderr)
    try:
        meta, results = asyncio.run(run(args))
    except KeyboardInterrupt:
        # asyncio.run has cancelled the run, whose cleanup has already deleted what it enrolled.
        print("interrupted: no report written", file=sys.stderr)
        return 130
    meta["started"] = started.isoformat(timespec="seconds")
    out_dir = args.out / f"loadtest-{started.strftime('%Y%m%dT%H%M%SZ')}"
    write_report(out_dir, meta, results)
    plot_latency(results, out_dir / "latency.png")
    print(summary_text(meta, results))
    print(f"report: {out_dir}/report.json, summary.txt, latency.png", file=sys.stderr)
    # The figures are fine, but items left on the user's service need their attention.
    return 1 if meta["cleanup"]["not_removed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
