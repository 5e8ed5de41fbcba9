"""The load-test report: ``report.json`` (everything) and ``summary.txt`` (a table to read)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.loadtest.level_result import LevelResult


def finite_json(value: Any) -> Any:
    """NaN/inf → ``None``: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value


def report_dict(meta: dict[str, Any], results: Sequence[LevelResult]) -> dict[str, Any]:
    rows = []
    for r in results:
        row = asdict(r)
        row["client_bound"] = r.client_bound
        rows.append(row)
    cleaned: dict[str, Any] = finite_json({"meta": meta, "results": rows})
    return cleaned


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summary_text(meta: dict[str, Any], results: Sequence[LevelResult]) -> str:
    lines = [
        f"Load test of {meta['url']} ({meta['started']}), open loop at constant arrival rate,",
        f"{meta['duration_s']:g} s per level, in-flight cap {meta['max_in_flight']}, "
        f"gallery of {meta['gallery_items']} items. Latency from the scheduled send time (ms).",
        "",
        f"{'scenario':<10} {'offered/s':>9}  {'endpoint':<28} {'ok/s':>7} {'p50':>8} {'p95':>8} "
        f"{'p99':>8} {'errors':>7} {'503s':>6}  {'client cpu':>10}",
    ]
    for r in results:
        # With a single endpoint the "all" row repeats it.
        rows = r.endpoints if len(r.endpoints) > 2 else r.endpoints[:1]
        for e in rows:
            flag = "  CLIENT-BOUND" if r.client_bound and e is rows[-1] else ""
            lines.append(
                f"{r.scenario:<10} {r.offered_rps:>9g}  {e.endpoint:<28} {e.throughput_rps:>7.1f} "
                f"{e.p50_ms:>8.1f} {e.p95_ms:>8.1f} {e.p99_ms:>8.1f} {e.error_rate:>7.1%} "
                f"{_share(e.rejected, e.requests):>6.1%}  "
                f"{r.client_cpu_share:>10.0%}{flag}"
            )
    lines += [
        "",
        "errors = non-2xx answers, timeouts, connection errors and requests dropped at the",
        "in-flight cap; 503s = the requests the service answered 503 (shedding load), counted",
        "in errors too. CLIENT-BOUND = the generator used >= 80 % of a core or sent > 10 ms",
        "late (p99), e.g. because it shares the machine with the server: its own delay is",
        "inside those latencies; run it from another machine.",
    ]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, meta: dict[str, Any], results: Sequence[LevelResult]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(
        json.dumps(report_dict(meta, results), indent=2, allow_nan=False) + "\n"
    )
    (out_dir / "summary.txt").write_text(summary_text(meta, results))
