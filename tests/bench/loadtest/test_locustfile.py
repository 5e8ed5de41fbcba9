"""The Locust soak file runs headless against the real service and leaves nothing behind."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import httpx

from app.main import create_app
from app.settings import Settings
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parents[3]
LOCUSTFILE = ROOT / "bench" / "loadtest" / "locustfile.py"


def test_soak_run_has_no_failures_and_cleans_up(default_model_path: Path, tmp_path: Path) -> None:
    # A soak holds a steady load: every user admitted (beyond the admission queue, 503s).
    app = create_app(
        Settings(model_path=default_model_path, data_dir=tmp_path / "data", admission_queue=10)
    )
    with live_server(app) as url:
        locust = Path(sys.executable).with_name("locust")
        cmd = [str(locust), "-f", str(LOCUSTFILE), "--host", url, "--headless",
               "--users", "10", "--spawn-rate", "10", "--run-time", "8s",
               "--csv", str(tmp_path / "soak"), "--only-summary"]  # fmt: skip
        # From another directory, as a user would run it from anywhere.
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        with (tmp_path / "soak_stats.csv").open() as f:
            rows = {row["Name"]: row for row in csv.DictReader(f)}
        failures = (tmp_path / "soak_failures.csv").read_text()
        for name in ("/search?k=10", "/items/[id]/images", "/items/[id]"):
            assert int(rows[name]["Request Count"]) > 0, name
            assert int(rows[name]["Failure Count"]) == 0, failures
        assert int(rows["Aggregated"]["Failure Count"]) == 0, failures
        # Seed gallery and every enrolled item deleted again, also those whose user was
        # stopped between enrolling and deleting.
        assert httpx.get(f"{url}/items").json()["items"] == []
