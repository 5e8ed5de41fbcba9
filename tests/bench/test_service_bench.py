"""`make bench` end to end, shortened, on the tiny artifact: its own service processes (batching
on, the released path, batch size 1), the in-process baselines, the open-loop steps, on the
embedded store and on Redis (a throw-away namespace, deleted afterwards).

What is checked is the bench, not the service's speed: every target's figure is recomputed
here from the raw figures in bench.json, its verdict from the figure and the bound, and the
printed table must say the same.
"""

from __future__ import annotations

import json
import math
import operator
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.service_process import REPO_ROOT
from tests.redis_server import REDIS_URL

TARGET_KEYS = [
    "search_over_raw_ort",
    "search_over_pipeline",
    "batching_throughput",
    "batching_p95",
    "batching_over_batch1_throughput",
    "one_client_p50",
    "enroll_over_raw_ort",
    "overload_p99",
    "overload_rejection_ms",
    "overload_other_5xx",
    "overload_connection_errors",
]
OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, "==": operator.eq}
# More --clients than the default admission queue takes: the compared services must admit them.
SHORT = [
    "--clients", "6", "--saturation-clients", "4", "--search-seconds", "1",
    "--single-seconds", "0.5", "--warmup-seconds", "0.3", "--enroll-seconds", "0.6",
    "--enroll-clients", "2", "--enroll-images", "3", "--open-loop-seconds", "1",
    "--ort-seconds", "0.05", "--pipeline-seconds", "0.2", "--gallery-copies", "1",
    "--photo-views", "1", "--megapixels", "0.05",
]  # fmt: skip


def _bench(model: Path, out: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    cmd = [sys.executable, "-m", "bench.service_bench", "--model", str(model), *SHORT]
    cmd += ["--out", str(out), *extra]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (report_path,) = out.glob("bench-*/bench.json")
    report: dict[str, Any] = json.loads(report_path.read_text())
    return done.stdout, report


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _ratio(a: float | None, b: float | None) -> float:
    a, b = _nan(a), _nan(b)
    return a / b if b > 0 else math.nan


def _expected_values(service: dict[str, Any]) -> dict[str, float]:
    """Each target's figure, from the raw figures of one store's report (the oracle)."""
    inproc = service["in_process"]
    # The ceiling: the best batch on either session, the service's or ORT's own.
    raw_best = max(b["images_per_s"] for b in inproc["raw_ort"] + inproc["raw_ort_ceiling"])
    w = {name: win["stats"] for name, win in service["windows"].items()}
    sat = w["saturation"]["throughput_rps"]
    base, over = service["open_loop"]["baseline"], service["open_loop"]["overload"]
    dropped = base["dropped"] or over["dropped"]
    return {
        "search_over_raw_ort": sat / raw_best,
        "search_over_pipeline": sat / inproc["pipeline"]["images_per_s"],
        "batching_throughput": _ratio(
            w["concurrent"]["throughput_rps"], w["off"]["throughput_rps"]
        ),
        "batching_p95": _ratio(w["concurrent"]["p95_ms"], w["off"]["p95_ms"]),
        "batching_over_batch1_throughput": _ratio(
            w["concurrent"]["throughput_rps"], w["batch1"]["throughput_rps"]
        ),
        "one_client_p50": _ratio(w["one_client"]["p50_ms"], inproc["single_image"]["total_p50_ms"]),
        "enroll_over_raw_ort": w["enroll"]["throughput_rps"] * service["enroll_images"] / raw_best,
        "overload_p99": math.nan
        if dropped
        else _ratio(over["accepted_p99_ms"], base["accepted_p99_ms"]),
        "overload_rejection_ms": _nan(over["rejected_p99_ms"]) if over["rejected"] else 0.0,
        "overload_other_5xx": over["other_5xx"],
        "overload_connection_errors": over["connection_errors"] + over["timeouts"],
    }


def _check_targets(report: dict[str, Any], store: str, stdout: str) -> None:
    service = report["services"][store]
    targets = report["targets"][store]
    assert [t["key"] for t in targets] == TARGET_KEYS
    expected = _expected_values(service)
    steps = service["open_loop"]
    open_invalid = any(
        s["achieved_rps"] < 0.95 * s["requested_rps"] and not s["dropped"] for s in steps.values()
    )
    for t in targets:
        value = _nan(t["value"])
        want = expected[t["key"]]
        assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want), t
        if t["op"] is None:
            assert t["verdict"] == "-"
            continue
        invalid = (t["key"].startswith("overload") and open_invalid) or (
            t["key"].startswith("batching_") and not service["has_batching"]
        )
        assert (t["invalid"] is not None) == invalid, t
        if invalid:
            verdict = "INVALID"
        elif math.isfinite(value) and OPS[t["op"]](value, t["bound"]):
            verdict = "PASS"
        else:
            verdict = "MISS"
        assert t["verdict"] == verdict, t
    # The printed table says the same: one row per target, its verdict in this store's column.
    table = stdout.split("Targets (issue 10)")[1].splitlines()[2:]
    rows = {line.strip().split("  ")[0]: line for line in table[: table.index("")]}
    assert list(rows) == [t["label"] for t in targets]
    column = report["stores"].index(store)
    for t in targets:
        verdicts = [c for c in rows[t["label"]].split() if c in ("PASS", "MISS", "INVALID", "-")]
        assert len(verdicts) == len(report["stores"]), rows[t["label"]]
        assert verdicts[column] == t["verdict"], rows[t["label"]]


def _check_windows(report: dict[str, Any], store: str) -> None:
    service = report["services"][store]
    # Raw ORT ran at the same batch sizes on the service's session and on ORT's own.
    inproc = service["in_process"]
    sizes = [b["batch_size"] for b in inproc["raw_ort"]]
    assert sizes and [b["batch_size"] for b in inproc["raw_ort_ceiling"]] == sizes
    windows = service["windows"]
    for name in ("saturation", "concurrent", "one_client", "off", "batch1"):
        win = windows[name]
        stats = win["stats"]
        assert stats["ok"] > 0 and stats["errors"] == 0, (name, stats)
        # Every search went through decode and the index once, and wrote nothing.
        calls = win["request"]["calls"]
        assert calls >= stats["ok"]
        for stage in ("decode", "index_search"):
            assert win["stages"][stage]["calls"] == calls, (name, stage)
        assert win["stages"]["store_write"]["calls"] == 0
        assert win["cpu_s"]["client_share"] == win["cpu_s"]["client_s"] / win["cpu_s"]["wall_s"]
    # Each configuration really ran as named: batches on, none off, exactly one image at batch 1.
    assert windows["concurrent"]["batching"]["batches"] > 0
    assert windows["off"]["batching"]["batches"] == 0
    batch1 = windows["batch1"]["batching"]
    assert batch1["batches"] > 0 and batch1["images"] == batch1["batches"]
    enroll = windows["enroll"]
    assert enroll["stats"]["ok"] > 0 and enroll["stages"]["store_write"]["calls"] > 0
    # The open-loop steps ran at the asked shares of the best closed-loop rate.
    sat = service["saturation_rps"]
    steps = service["open_loop"]
    assert steps["baseline"]["requested_rps"] == pytest.approx(0.7 * sat)
    assert steps["overload"]["requested_rps"] == pytest.approx(2.0 * sat)
    # The breakdown's parts add up to the machine's core time per search.
    breakdown = service["breakdown"]
    assert sum(breakdown["core_ms"].values()) == pytest.approx(breakdown["budget_ms"])


@pytest.mark.redis
def test_bench_on_both_stores_prints_targets_that_follow_from_the_figures(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    stdout, report = _bench(tiny_model_path, tmp_path, "--store", "both", "--redis-url", REDIS_URL)
    assert report["stores"] == ["sqlite", "redis"]
    for store in ("sqlite", "redis"):
        _check_windows(report, store)
        _check_targets(report, store, stdout)
    # Each Redis service wrote under its own namespace, and none of it is left.
    namespaces = report["services"]["redis"]["stores"]
    assert list(namespaces) == ["on", "compare", "off", "batch1"]
    assert len({ns["namespace"] for ns in namespaces.values()}) == 4
    for ns in namespaces.values():
        assert ns["backend"] == "redis" and ns["url"] == REDIS_URL
        assert ns["keys_deleted"] > 0
        assert list(client.scan_iter(match=f"{ns['namespace']}:*")) == []
    client.close()
    store = namespaces["on"]
    assert f"redis = {REDIS_URL}, namespace {store['namespace']}" in stdout
    # The lean client's CPU share is printed beside each window, the breakdown per store.
    assert stdout.count("per search at saturation") == 2
    assert "client cpu" in stdout
    header = stdout.split("Targets (issue 10)")[1].splitlines()[1]
    assert header.split()[-2:] == ["sqlite", "redis"]
