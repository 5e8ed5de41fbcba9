"""`make bench` end to end, shortened: its own service process, all three measurements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from deploy.benchmark.service_process import REPO_ROOT


def test_bench_runs_and_reports_ratio_and_stages(default_model_path: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "deploy/bench.py", "--model", str(default_model_path)]
    cmd += ["--clients", "2", "--search-seconds", "2", "--enroll-seconds", "1.5"]
    cmd += ["--warmup-seconds", "0.5", "--ort-seconds", "0.2", "--gallery-copies", "1"]
    cmd += ["--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ratio service / best raw ORT" in done.stdout

    (report_path,) = tmp_path.glob("bench-*/bench.json")
    report = json.loads(report_path.read_text())
    assert [b["batch_size"] for b in report["ort"]] == [1, 2, 4, 8, 16, 32]
    best = max(report["ort"], key=lambda b: b["images_per_s"])
    assert report["ort_best"]["batch_size"] == best["batch_size"]
    search = report["search"]
    assert search["ok"] > 0 and search["errors"] == 0
    assert report["search_over_ort_best"] == search["throughput_rps"] / best["images_per_s"]
    # Every search went through decode, inference and the index exactly once, and wrote nothing.
    stages = {s["name"]: s for s in report["stages"]["search"]["stages"]}
    requests = report["stages"]["search"]["request"]["calls"]
    assert requests >= search["ok"]
    for name in ("decode", "inference", "index_search"):
        assert stages[name]["calls"] == requests
        assert stages[name]["total_s"] > 0
    assert stages["store_write"]["calls"] == 0 and stages["index_update"]["calls"] == 0
    enroll_stages = {s["name"]: s for s in report["stages"]["enroll"]["stages"]}
    assert enroll_stages["store_write"]["calls"] > 0 and enroll_stages["index_update"]["calls"] > 0
