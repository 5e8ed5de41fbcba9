"""`make bench` end to end, shortened: its own service process, all three measurements, on the
embedded store and on Redis (a throw-away namespace, deleted afterwards)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.service_process import REPO_ROOT
from tests.redis_server import REDIS_URL


def _bench(model: Path, out: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    cmd = [sys.executable, "-m", "bench.service_bench", "--model", str(model)]
    cmd += ["--clients", "2", "--search-seconds", "2", "--enroll-seconds", "1.5"]
    cmd += ["--warmup-seconds", "0.5", "--ort-seconds", "0.2", "--gallery-copies", "1"]
    cmd += ["--out", str(out), *extra]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (report_path,) = out.glob("bench-*/bench.json")
    report: dict[str, Any] = json.loads(report_path.read_text())
    return done.stdout, report


def _check_service(report: dict[str, Any], service: dict[str, Any]) -> None:
    best = max(report["ort"], key=lambda b: b["images_per_s"])
    search = service["search"]
    assert search["ok"] > 0 and search["errors"] == 0
    assert service["search_over_ort_best"] == search["throughput_rps"] / best["images_per_s"]
    # The bench client's own CPU use is reported next to the throughput it limits.
    for window in ("search_client", "enroll_client"):
        client = service[window]
        assert client["cpu_s"] > 0 and client["wall_s"] > 1
        assert client["cpu_share"] == client["cpu_s"] / client["wall_s"]
        assert client["client_bound"] == (client["cpu_share"] >= 0.8)
    # Every search went through decode, inference and the index exactly once, and wrote nothing.
    stages = {s["name"]: s for s in service["stages"]["search"]["stages"]}
    requests = service["stages"]["search"]["request"]["calls"]
    assert requests >= search["ok"]
    for name in ("decode", "inference", "index_search"):
        assert stages[name]["calls"] == requests
        assert stages[name]["total_s"] > 0
    assert stages["store_write"]["calls"] == 0 and stages["index_update"]["calls"] == 0
    enroll_stages = {s["name"]: s for s in service["stages"]["enroll"]["stages"]}
    assert enroll_stages["store_write"]["calls"] > 0 and enroll_stages["index_update"]["calls"] > 0


def test_bench_runs_and_reports_ratio_and_stages(default_model_path: Path, tmp_path: Path) -> None:
    stdout, report = _bench(default_model_path, tmp_path)
    assert "sqlite: ratio service / best raw ORT" in stdout
    assert "stores: sqlite = embedded store in a temporary SQLite file" in stdout
    assert "client cpu" in stdout
    assert [b["batch_size"] for b in report["ort"]] == [1, 2, 4, 8, 16, 32]
    best = max(report["ort"], key=lambda b: b["images_per_s"])
    assert report["ort_best"]["batch_size"] == best["batch_size"]
    assert report["stores"] == ["sqlite"] and list(report["services"]) == ["sqlite"]
    service = report["services"]["sqlite"]
    assert service["store"]["backend"] == "sqlite"
    _check_service(report, service)


@pytest.mark.redis
def test_bench_on_both_stores_side_by_side_and_redis_namespace_dropped(
    default_model_path: Path, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    stdout, report = _bench(
        default_model_path, tmp_path, "--store", "both", "--redis-url", REDIS_URL
    )
    assert report["stores"] == ["sqlite", "redis"]
    for name in ("sqlite", "redis"):
        _check_service(report, report["services"][name])
    store = report["services"]["redis"]["store"]
    assert store["backend"] == "redis" and store["url"] == REDIS_URL
    namespace = store["namespace"]
    assert namespace.startswith("bench-")
    # The service really wrote there (model identity, counts, ...), and none of it is left.
    assert store["keys_deleted"] > 0
    assert list(client.scan_iter(match=f"{namespace}:*")) == []
    client.close()
    # Side by side: one row per store in each table, the store named in the header.
    assert f"redis = {REDIS_URL}, namespace {namespace}" in stdout
    search_rows = [ln.split()[0] for ln in stdout.splitlines() if "ratio service" in ln]
    assert search_rows == ["sqlite:", "redis:"]
    # The stage tables of the search and the enrollment window, one block of columns each.
    assert sum(ln.split() == ["sqlite", "redis"] for ln in stdout.splitlines()) == 2
