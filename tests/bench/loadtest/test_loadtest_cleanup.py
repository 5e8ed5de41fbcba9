"""The load test removes every item it created from the real service, even when a level fails
half-way, enrollments time out and commit after the client gave up, DELETEs answer 5xx, or the
run is interrupted; what it cannot remove it reports (and exits 1)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.main import create_app
from app.settings import Settings
from bench.loadtest.__main__ import main
from bench.loadtest.photo_set import build_photo_set
from bench.loadtest.request_sample import Operation
from bench.loadtest.scenarios import EnrollScenario
from bench.service_process import REPO_ROOT, service_process
from tests.live_server import live_server

# The load test's enroll-scenario ids (`lt-<run>-<uuid4 hex>`), not its seed gallery's.
_ENROLL_PATH = re.compile(r"^/items/lt-[0-9a-f]{8}-[0-9a-f]{32}/images$")
_DELETE_PATH = re.compile(r"^/items/([^/]+)$")


@dataclass
class FaultPlan:
    """What the fault injector does, and what it saw."""

    # Hold every enroll-scenario request this long after reading its body, then let the real
    # app commit it, its client's disconnect hidden from it: longer than the client's timeout,
    # so the commit lands after it gave up.
    slow_enroll_s: float = 0.0
    # The first DELETE of every item answers 503 without reaching the app.
    fail_first_delete: bool = False
    # DELETEs of ids ending with one of these always answer 500.
    undeletable_suffixes: tuple[str, ...] = ()
    deletes: Counter[str] = field(default_factory=Counter)
    late_enroll_statuses: list[int] = field(default_factory=list)


class FaultInjector:
    """Outermost ASGI middleware around the real app."""

    def __init__(self, app: ASGIApp, *, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        deleted = _DELETE_PATH.match(path) if method == "DELETE" else None
        if deleted:
            item_id = deleted.group(1)
            self.plan.deletes[item_id] += 1
            if item_id.endswith(self.plan.undeletable_suffixes):
                await _answer(send, 500)
                return
            if self.plan.fail_first_delete and self.plan.deletes[item_id] == 1:
                await _answer(send, 503)
                return
        if method == "POST" and self.plan.slow_enroll_s and _ENROLL_PATH.match(path):
            await self._late_enroll(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _late_enroll(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Read the whole body first (as the real service does before it works on a request),
        # so the app still gets it after the client has hung up.
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await asyncio.sleep(self.plan.slow_enroll_s)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            # The client's disconnect is never passed on. The service drops a request whose
            # client left before its inference, so this stands for a client that gives up
            # once the work is under way (a slow store commit): it still commits, for nobody.
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.plan.late_enroll_statuses.append(int(message["status"]))
            await send(message)

        await self.app(scope, replay, record)


async def _answer(send: Send, status: int) -> None:
    body = json.dumps({"title": "injected fault", "status": status}).encode()
    headers = [(b"content-type", b"application/problem+json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _app(model: Path, data_dir: Path, plan: FaultPlan) -> FastAPI:
    app = create_app(Settings(model_path=model, data_dir=data_dir))
    app.add_middleware(FaultInjector, plan=plan)
    return app


def _item_ids(url: str) -> list[str]:
    page = httpx.get(f"{url}/items", params={"limit": 1000}, timeout=30).json()
    assert page["next_cursor"] is None
    return [i["item_id"] for i in page["items"]]


def _enroll_keep_me(url: str) -> None:
    # Someone else's item, which the load test must leave alone.
    files = {"images": ("keep.jpg", build_photo_set(1).all_views()[0], "image/jpeg")}
    assert httpx.post(f"{url}/items/keep-me/images", files=files, timeout=60).status_code == 201


def test_failure_mid_level_still_removes_every_item_including_late_commits(
    default_model_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    timeout_s = 3.0
    # Every enrollment times out on the client and commits 1 s later on the server.
    plan = FaultPlan(slow_enroll_s=timeout_s + 1.0)
    real_operation = EnrollScenario.operation

    def failing_operation(self: EnrollScenario, i: int) -> Operation:
        # The request path throws (a bug, say) while earlier enrollments are still in flight.
        if i == 3:
            raise RuntimeError("injected failure in the request path")
        return real_operation(self, i)

    monkeypatch.setattr(EnrollScenario, "operation", failing_operation)
    with live_server(_app(default_model_path, tmp_path / "data", plan)) as url:
        _enroll_keep_me(url)
        args = ["--url", url, "--scenarios", "enroll", "--levels", "2", "--duration", "3"]
        args += ["--timeout", str(timeout_s), "--views-per-photo", "1", "--gallery-copies", "1"]
        with pytest.raises(RuntimeError, match="injected failure"):
            main([*args, "--out", str(tmp_path / "reports")])
        remaining = _item_ids(url)

    assert remaining == ["keep-me"]
    # The scenario sent 3 enrollments (0.5 s apart) before it failed; the server committed
    # every one of them after the client had given up on it, and they are gone all the same.
    assert plan.late_enroll_statuses == [201, 201, 201]
    err = capsys.readouterr().err
    # At least the last one was still uncommitted at the first DELETE pass (404), so it was
    # caught only by the pass after the grace period.
    assert re.search(r"cleanup: [123] enrollments were never answered", err)
    # 8 seed items + 3 enrollments.
    assert "cleanup: 11 of 11 tracked items deleted, none left behind" in err
    assert not list((tmp_path / "reports").glob("loadtest-*"))  # no report of a failed run


def test_failed_deletes_are_retried_once_and_what_remains_is_reported(
    default_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = FaultPlan(fail_first_delete=True, undeletable_suffixes=("-g0-astronaut",))
    with live_server(_app(default_model_path, tmp_path / "data", plan)) as url:
        _enroll_keep_me(url)
        args = ["--url", url, "--scenarios", "enroll", "--levels", "3", "--duration", "1"]
        args += ["--views-per-photo", "1", "--gallery-copies", "1"]
        code = main([*args, "--out", str(tmp_path / "reports")])
        remaining = _item_ids(url)

    assert code == 1
    (stuck,) = (i for i in remaining if i != "keep-me")
    assert stuck.endswith("-g0-astronaut")
    # Every DELETE was tried exactly twice: answered 503 (or 500), then retried once.
    assert plan.deletes and set(plan.deletes.values()) == {2}
    assert len(plan.deletes) == 8 + 3
    (report_path,) = (tmp_path / "reports").glob("loadtest-*/report.json")
    report = json.loads(report_path.read_text())
    assert report["meta"]["cleanup"] == {
        "tracked": 11,
        "deleted": 10,
        "not_removed": 1,
        "not_removed_ids": [stuck],
    }
    # The level's own cleanup deleted its 3 enrollments despite the first 503s.
    assert [r["cleaned_up_items"] for r in report["results"]] == [3]
    err = capsys.readouterr().err
    assert f"WARNING: 1 could not be removed and may remain on the service: {stuck}" in err


def test_interrupted_run_removes_what_it_enrolled(default_model_path: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) mid-level: the command stops, and first deletes what it enrolled."""
    with service_process(default_model_path, tmp_path / "data") as url:
        _enroll_keep_me(url)
        cmd = [sys.executable, "-m", "bench.loadtest", "--url", url, "--scenarios", "enroll"]
        cmd += ["--levels", "4", "--duration", "60", "--views-per-photo", "1"]
        cmd += ["--gallery-copies", "1", "--out", str(tmp_path / "reports")]
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stderr is not None
            lines = []
            for line in proc.stderr:
                lines.append(line)
                if line.startswith("seeded "):
                    break
            # Well into the level: enrollments committed, some under way.
            deadline = time.monotonic() + 30
            while len(_item_ids(url)) < 1 + 8 + 4:
                assert time.monotonic() < deadline, "the enroll level did not start"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            err = "".join(lines) + proc.stderr.read()
            assert proc.wait(timeout=120) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        remaining = _item_ids(url)

    assert remaining == ["keep-me"], err
    assert re.search(r"cleanup: (\d+) of \1 tracked items deleted, none left behind", err), err
    assert "interrupted: no report written" in err
    assert not list((tmp_path / "reports").glob("loadtest-*"))
