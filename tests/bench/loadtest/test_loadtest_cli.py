"""`python -m bench.loadtest` against the real service: report files, zero errors, and every
item it enrolled (seed gallery and enroll scenario) deleted again."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.api_keys import Scope, make_key
from app.main import create_app
from app.settings import Settings
from bench.loadtest.__main__ import main
from bench.loadtest.photo_set import build_photo_set
from client.api_key_header import API_KEY_VARIABLE, api_key_headers
from tests.live_server import live_server


def test_loadtest_writes_report_and_cleans_up(
    default_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(Settings(model_path=default_model_path, data_dir=tmp_path / "data"))
    with live_server(app) as url:
        # Someone else's item, which the load test must leave alone.
        files = {"images": ("keep.jpg", build_photo_set(1).all_views()[0], "image/jpeg")}
        assert httpx.post(f"{url}/items/keep-me/images", files=files).status_code == 201

        code = main(
            [
                "--url",
                url,
                "--levels",
                "3,6",
                "--duration",
                "1.7",
                "--views-per-photo",
                "1",
                "--gallery-copies",
                "1",
                "--out",
                str(tmp_path / "reports"),
            ]
        )
        assert code == 0
        remaining = httpx.get(f"{url}/items", params={"limit": 100}).json()

    assert [i["item_id"] for i in remaining["items"]] == ["keep-me"]
    (out_dir,) = (tmp_path / "reports").glob("loadtest-*")
    report = json.loads((out_dir / "report.json").read_text())
    assert (out_dir / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "POST /search" in (out_dir / "summary.txt").read_text()
    rows = report["results"]
    assert [(r["scenario"], r["offered_rps"]) for r in rows] == [
        (s, rate) for s in ("search", "enroll", "mix90-10") for rate in (3.0, 6.0)
    ]
    for r in rows:
        overall = r["endpoints"][-1]
        assert overall["endpoint"] == "all"
        # ceil(rate * 1.7) arrivals: 6 at 3/s, 11 at 6/s.
        assert overall["requests"] == {3.0: 6, 6.0: 11}[r["offered_rps"]]
        assert overall["errors"] == 0, r
        assert 0 < overall["p50_ms"] <= overall["p95_ms"] <= overall["p99_ms"]
        assert 0 <= r["client_cpu_share"] < 4
    # The enroll scenario deleted exactly the items it created; the mix at 6/s enrolled 1.
    enroll = {r["offered_rps"]: r["cleaned_up_items"] for r in rows if r["scenario"] == "enroll"}
    assert enroll == {3.0: 6, 6.0: 11}
    mix = {r["offered_rps"]: r["cleaned_up_items"] for r in rows if r["scenario"] == "mix90-10"}
    assert mix == {3.0: 0, 6.0: 1}
    assert report["meta"]["gallery_items"] == 8


def test_loadtest_sends_the_key_from_the_environment(
    tiny_model_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    key, record = make_key("loadtest", [Scope.READ, Scope.WRITE])
    app = create_app(
        Settings(
            model_path=tiny_model_path, data_dir=tmp_path / "data", api_keys=record.hash_line()
        )
    )
    args = ["--url", "", "--levels", "4", "--duration", "1", "--scenarios", "search,enroll"]
    args += ["--views-per-photo", "1", "--gallery-copies", "1", "--out", str(tmp_path / "reports")]
    with live_server(app) as url:
        args[1] = url
        # Without the key the keyed service refuses the run's first enrollment.
        with pytest.raises(RuntimeError, match=r"seeding .* failed: 401"):
            main(args)
        refused = requests_by_status(httpx.get(f"{url}/metrics").text)["401"]
        monkeypatch.setenv(API_KEY_VARIABLE, key)
        assert main(args) == 0
        statuses = requests_by_status(httpx.get(f"{url}/metrics").text)
        remaining = httpx.get(f"{url}/items", headers=api_key_headers()).json()["items"]

    (out_dir,) = (tmp_path / "reports").glob("loadtest-*")
    rows = json.loads((out_dir / "report.json").read_text())["results"]
    assert all(r["endpoints"][-1]["errors"] == 0 for r in rows), rows
    # Every 401 is the keyless attempt's; the keyed run's 2xx include every scenario.
    assert statuses["401"] == refused, statuses
    assert statuses["201"] >= 8 and statuses["200"] >= 4 and statuses["204"] >= 8
    assert remaining == []


def requests_by_status(metrics: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                status = sample.labels["status"]
                out[status] = out.get(status, 0) + sample.value
    return out
