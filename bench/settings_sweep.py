"""Choose the serving defaults by measurement: vary one setting at a time around the current
defaults and measure each configuration the way ``make bench`` judges the service.

    python -m bench.settings_sweep --model models/default/embedder.onnx [--store sqlite]
        [--values worker_threads=2,4,8] [--values admission_queue=4,8,16,32] ...

Per configuration (its own service process, a seeded gallery, a throw-away store): closed-loop
searches at saturation (as many clients as its admission queue admits), then open loop at
--baseline-load and at --overload x that rate, on ≈ 1 MP JPEG uploads sent by the lean client.
It prints one row per configuration (searches/s, p95, the 70 % p99, the accepted p99 at 2x and
its ratio to the 70 % one, the 503s' p99 from the scheduled send) and, per setting, the value
the rule below picks. The defaults' own row is measured again in every setting's sweep, so the
spread of those rows is the run's noise.

Rule: among the values whose searches/s are within --noise of the setting's best, the one with
the lowest accepted p99 at 2x (bounded latency under overload is what the admission queue is
for; throughput within the noise is a tie). A coordinate sweep, not a full grid: each setting
is judged with the others at today's defaults, so run it again after changing one.

About 35 s per configuration with the defaults (13 configurations: ≈ 8 minutes on 2 cores).
Writes reports/sweep-<UTC time>/sweep.json and summary.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from app.settings import Settings
from bench.large_photos import build_large_photo_set
from bench.lean_client import LeanClient
from bench.loadtest.photo_set import PhotoSet
from bench.process_cpu import usable_cores
from bench.redis_namespace import check_redis
from bench.report_files import write_report_files
from bench.service_session import ServiceSession, SessionPlan
from bench.service_under_test import ServiceConfig, running_service

# The settings that decide how requests share the cores, and the values tried by default.
DEFAULT_VALUES: dict[str, tuple[int, ...]] = {
    "worker_threads": (2, 4, 8),
    "inference_threads": (1, 2),
    "batch_max_delay_us": (0, 500, 1000, 3000),
    "admission_queue": (4, 8, 16, 32),
}


@dataclass(frozen=True)
class SweepRow:
    """One configuration's figures; latencies in ms (``nan``: nothing of that kind)."""

    setting: str
    value: int
    is_default: bool
    searches_per_s: float
    p95_ms: float
    mean_batch: float
    baseline_p99_ms: float
    overload_accepted_p99_ms: float
    overload_rejected: int
    overload_rejected_p99_ms: float
    overload_achieved_share: float
    other_errors: int

    @property
    def overload_ratio(self) -> float:
        return self.overload_accepted_p99_ms / self.baseline_p99_ms


def parse_values(texts: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``NAME=v1,v2`` flags over the defaults; a setting that is not a field is an error."""
    values = dict(DEFAULT_VALUES)
    for text in texts:
        name, sep, rest = text.partition("=")
        if not sep or name not in Settings.model_fields:
            raise ValueError(f"expected SETTING=v1,v2 with a service setting, got {text!r}")
        try:
            values[name] = tuple(int(v) for v in rest.split(","))
        except ValueError as exc:
            raise ValueError(f"values of {name} must be integers: {rest!r}") from exc
    return values


def default_value(name: str, settings: Settings) -> int:
    """The value the service runs with today; ``inference_threads`` 0 is reported as the
    threads it resolves to, so that it matches a swept value."""
    if name == "inference_threads":
        return settings.inference_threads or usable_cores()
    return int(getattr(settings, name))


def choose(rows: Sequence[SweepRow], noise: float) -> SweepRow:
    """The rule of the module docstring, over one setting's rows."""
    best = max(r.searches_per_s for r in rows)
    tied = [r for r in rows if r.searches_per_s >= (1 - noise) * best]
    return min(tied, key=lambda r: r.overload_accepted_p99_ms)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.settings_sweep",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )

    def flag(name: str, kind: type, default: Any, text: str) -> None:
        p.add_argument(name, type=kind, default=default, help=f"{text} (default %(default)s)")

    flag("--model", Path, Path("models/default/embedder.onnx"), "ONNX embedder to serve")
    p.add_argument("--store", choices=("sqlite", "redis"), default="sqlite", help="the store")
    flag("--redis-url", str, "redis://127.0.0.1:6379/0", "Redis for --store redis")
    p.add_argument(
        "--values",
        action="append",
        default=[],
        metavar="SETTING=V1,V2",
        help="values to try for one setting (repeatable); the others keep theirs:\n"
        + ", ".join(f"{k}={','.join(map(str, v))}" for k, v in DEFAULT_VALUES.items()),
    )
    p.add_argument(
        "--only", action="append", default=[], metavar="SETTING", help="sweep only these"
    )
    flag("--search-seconds", float, 8.0, "closed-loop saturation window")
    flag("--warmup-seconds", float, 2.0, "unmeasured searches after each service starts")
    flag("--open-loop-seconds", float, 8.0, "each open-loop step")
    flag("--baseline-load", float, 0.7, "first open-loop step, as a share of saturation")
    flag("--overload", float, 2.0, "second open-loop step, as a multiple of saturation")
    flag("--max-in-flight", int, 512, "open loop: outstanding requests before drops")
    flag("--rounds", int, 1, "measurements of each value, interleaved; rows show medians")
    flag("--noise", float, 0.05, "throughputs within this share of the best are a tie")
    flag("--timeout", float, 30.0, "per-request timeout, seconds")
    flag("--gallery-copies", int, 2, "seed gallery: items per source photo, 8 photos")
    flag("--photo-views", int, 4, "uploads per source photo, 8 photos")
    flag("--megapixels", float, 1.0, "size of each upload")
    flag("--out", Path, Path("reports"), "parent of the report directory")
    return p


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _measure(
    url: str, pid: int, photos: PhotoSet, args: argparse.Namespace, clients: int
) -> dict[str, Any]:
    plan = SessionPlan(
        warmup_s=args.warmup_seconds,
        search_s=args.search_seconds,
        single_s=0.0,
        enroll_s=0.0,
        enroll_clients=1,
        enroll_images=1,
        open_loop_s=args.open_loop_seconds,
        max_in_flight=args.max_in_flight,
        gallery_copies=args.gallery_copies,
    )
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        session = ServiceSession(client, LeanClient(url, timeout_s=args.timeout), pid, photos, plan)
        try:
            await session.seed()
            await session.warm_up(clients)
            saturation = await session.closed_search(clients, args.search_seconds)
            rate = saturation.stats.throughput_rps
            if rate <= 0:
                raise RuntimeError("no search was answered 2xx: see the service log")
            baseline = await session.open_step(args.baseline_load * rate)
            overload = await session.open_step(args.overload * rate)
        finally:
            await session.close()
    return {"saturation": saturation, "baseline": baseline, "overload": overload}


def _row(setting: str, value: int, is_default: bool, m: dict[str, Any]) -> SweepRow:
    sat, base, over = m["saturation"], m["baseline"].step, m["overload"].step
    other = sum(
        s.other_5xx + s.other_non_2xx + s.connection_errors + s.timeouts + s.dropped
        for s in (base, over)
    )
    return SweepRow(
        setting=setting,
        value=value,
        is_default=is_default,
        searches_per_s=sat.stats.throughput_rps,
        p95_ms=sat.stats.p95_ms,
        mean_batch=sat.batching.mean_batch_size,
        baseline_p99_ms=base.accepted_p99_ms,
        overload_accepted_p99_ms=over.accepted_p99_ms,
        overload_rejected=over.rejected,
        overload_rejected_p99_ms=over.rejected_p99_ms,
        overload_achieved_share=min(base.achieved_share, over.achieved_share),
        other_errors=other + sat.stats.errors - sat.stats.rejected,
    )


def median_row(rows: Sequence[SweepRow]) -> SweepRow:
    """One value's rounds as one row: each figure's median (counts rounded down)."""
    first = rows[0]
    figures: dict[str, Any] = {}
    for name in ("setting", "value", "is_default"):
        figures[name] = getattr(first, name)
    for f in fields(SweepRow):
        if f.name in figures:
            continue
        middle = statistics.median(getattr(r, f.name) for r in rows)
        figures[f.name] = int(middle) if isinstance(getattr(first, f.name), int) else middle
    return SweepRow(**figures)


def _measure_config(
    args: argparse.Namespace,
    photos: PhotoSet,
    out_dir: Path,
    setting: str,
    value: int,
    default: int,
    settings: Settings,
) -> SweepRow:
    env = {f"RETRIEVAL_{setting.upper()}": str(value)}
    clients = value if setting == "admission_queue" else settings.admission_queue
    config = ServiceConfig(f"{setting}-{value}", f"{setting}={value}", env)
    _log(f"{setting}={value}: {clients} clients at saturation")
    with running_service(
        args.model, args.store, config, log_dir=out_dir, redis_url=args.redis_url
    ) as service:
        measured = asyncio.run(_measure(service.url, service.pid, photos, args, clients))
    row = _row(setting, value, value == default, measured)
    _log(
        f"    {row.searches_per_s:.1f}/s, p99 {row.baseline_p99_ms:.0f} ms at 70 %, "
        f"{row.overload_accepted_p99_ms:.0f} ms at 2x ({row.overload_rejected} 503s)"
    )
    return row


def summary_text(
    rows: Sequence[SweepRow], chosen: dict[str, SweepRow], meta: dict[str, Any]
) -> str:
    lines = [
        f"settings sweep, {meta['store']} store, {meta['rounds']} round(s) (medians), "
        f"{meta['uploads']} uploads of "
        f"≈ {meta['megapixels']:g} MP, defaults: {meta['defaults']}",
        f"{'setting=value':<24} {'search/s':>9} {'p95':>7} {'batch':>6} {'p99@70%':>8} "
        f"{'p99@2x':>8} {'ratio':>6} {'503s':>5} {'503 p99':>8} {'sent':>5} {'errors':>6}",
    ]
    for r in rows:
        mark = "*" if r.is_default else " "
        lines.append(
            f"{mark}{r.setting + '=' + str(r.value):<23} {r.searches_per_s:9.1f} "
            f"{r.p95_ms:7.0f} {r.mean_batch:6.1f} {r.baseline_p99_ms:8.0f} "
            f"{r.overload_accepted_p99_ms:8.0f} {r.overload_ratio:6.2f} "
            f"{r.overload_rejected:5d} {r.overload_rejected_p99_ms:8.0f} "
            f"{r.overload_achieved_share:5.0%} {r.other_errors:6d}"
        )
    defaults = [r.searches_per_s for r in rows if r.is_default]
    if len(defaults) > 1:
        spread = (max(defaults) - min(defaults)) / max(defaults)
        lines.append(
            f"noise: the defaults' row measured {len(defaults)} times, searches/s "
            f"{min(defaults):.1f}–{max(defaults):.1f} (spread {spread:.0%})"
        )
    lines.append("* = today's default. Chosen (searches/s within the noise band of the best, then")
    lines.append("the lowest accepted p99 at 2x):")
    for setting, r in chosen.items():
        verdict = "keep the default" if r.is_default else "differs from the default"
        lines.append(f"    {setting} = {r.value}  ({verdict})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        values = parse_values(args.values)
    except ValueError as exc:
        raise SystemExit(f"settings_sweep: {exc}") from None
    if args.only:
        unknown = set(args.only) - set(values)
        if unknown:
            raise SystemExit(f"settings_sweep: --only names unknown settings {sorted(unknown)}")
        values = {k: v for k, v in values.items() if k in args.only}
    if args.store == "redis":
        try:
            check_redis(args.redis_url)
        except RuntimeError as exc:
            raise SystemExit(f"settings_sweep: {exc}") from None
    started = datetime.now(UTC)
    out_dir = args.out / f"sweep-{started.strftime('%Y%m%dT%H%M%SZ')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(model_path=args.model)
    photos = build_large_photo_set(args.photo_views, megapixels=args.megapixels)
    rows: list[SweepRow] = []
    chosen: dict[str, SweepRow] = {}
    for setting, tried in values.items():
        default = default_value(setting, settings)
        tried_values = sorted(set(tried) | {default})
        measured: dict[int, list[SweepRow]] = {v: [] for v in tried_values}
        # Rounds interleave the values (a b c a b c ...), so a slow minute of a shared machine
        # hits every value alike instead of one value's every round.
        for _ in range(args.rounds):
            for value in tried_values:
                measured[value].append(
                    _measure_config(args, photos, out_dir, setting, value, default, settings)
                )
        setting_rows = [median_row(measured[v]) for v in tried_values]
        rows += setting_rows
        chosen[setting] = choose(setting_rows, args.noise)
    meta = {
        "store": args.store,
        "started": started.isoformat(timespec="seconds"),
        "uploads": len(photos.all_views()),
        "megapixels": args.megapixels,
        "defaults": {k: default_value(k, settings) for k in values},
        "noise": args.noise,
        "rounds": args.rounds,
    }
    text = summary_text(rows, chosen, meta)
    print(text, end="")
    report = {
        **meta,
        "rows": [asdict(r) | {"overload_ratio": r.overload_ratio} for r in rows],
        "chosen": {k: r.value for k, r in chosen.items()},
    }
    write_report_files(out_dir, "sweep.json", report, text)
    _log(f"report: {out_dir}/sweep.json, summary.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
