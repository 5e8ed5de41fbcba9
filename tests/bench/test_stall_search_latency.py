"""bench/stall_search_latency.py end to end, short, on the tiny artifact: its own redis-server
and service; the stalled phase's searches are all answered and its writes all 503."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.service_process import REPO_ROOT

WRITE_DEADLINE_MS = 1500


def test_a_short_run_measures_both_phases(tiny_model_path: Path) -> None:
    # The write deadline as short as reads' (4 s by default), so a 2.5 s stall outlasts it.
    cmd = [sys.executable, "-m", "bench.stall_search_latency", "--model", str(tiny_model_path),
           "--writers", "4", "--seconds", "2.5",
           "--env", f"RETRIEVAL_STORE_WRITE_DEADLINE_MS={WRITE_DEADLINE_MS}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    answering = next(line for line in out.splitlines() if line.startswith("Redis answering"))
    stalled = next(line for line in out.splitlines() if line.startswith("Redis stalled"))
    # Redis answering: writes commit; stalled: every write gets its 503 at the write deadline
    # (1.5 s here, + 0.2 s), no other status, while every search is answered.
    assert "writes 201:" in answering and "503" not in answering.split("writes")[1]
    assert re.search(r"writes 503: \d+, slowest 503 (\d+\.\d+) s$", stalled), stalled
    slowest = float(re.findall(r"slowest 503 (\d+\.\d+) s", stalled)[0])
    assert slowest < WRITE_DEADLINE_MS / 1000 + 0.2 + 0.5, slowest
    assert re.match(r"Redis stalled\s+searches 200: \d+, p50", stalled), stalled
    assert "search p99 stalled / answering:" in out and "PASS" in out
