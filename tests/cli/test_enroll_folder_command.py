"""``centroid-retrieval enroll-folder`` as users run it, against a real service: interrupted
and resumed, files refused, the service unreachable.

The service is the real app with the real default model under a real uvicorn, at most two files
per request; the folders hold real photo views.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from client.enroll_state import DEFAULT_STATE_NAME
from tests.cli.run_cli import ROOT, cli_command, cli_env, run_cli
from tests.client.enroll_service import (
    MAX_IMAGES,
    item_image_counts,
    outcomes,
    write_files,
)
from tests.live_server import free_port

Views = dict[str, list[bytes]]
ITEMS = ("astronaut", "chelsea", "coffee", "rocket")
VIEWS = 3


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_an_interrupted_run_resumes_where_it_stopped(
    service: httpx.Client, photo_views: Views, tmp_path: Path, sig: signal.Signals
) -> None:
    root, prefix, url = tmp_path / "photos", f"{sig.name}:", str(service.base_url)
    files = {f"{name}/{i}.jpg": photo_views[name][i] for name in ITEMS for i in range(VIEWS)}
    write_files(root, files)
    args = ("enroll-folder", str(root), "--url", url, "--prefix", prefix)
    proc = subprocess.Popen(
        cli_command(*args), cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    # Interrupted as soon as the first file is reported enrolled: mid-run, 12 files to go
    # in 8 requests.
    head = []
    for raw in proc.stdout:
        head.append(raw.decode())
        if raw.startswith(b"enrolled"):
            break
    proc.send_signal(sig)
    tail, err = proc.communicate(timeout=60)
    first = "".join(head) + tail.decode()
    if sig is signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130
        assert "error: interrupted; the same command resumes" in err.decode()
        assert "Traceback" not in err.decode()
    enrolled = {path for path, outcome in outcomes(first).items() if outcome == "enrolled"}
    assert enrolled and len(enrolled) < len(files)

    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    seen = outcomes(done.stdout)
    assert set(seen) == set(files)
    # Everything reported enrolled was on record already, and was not sent again.
    assert {path: seen[path] for path in enrolled} == dict.fromkeys(enrolled, "skipped-already")
    # The one request in flight at the interruption may have been accepted but not recorded:
    # sent again, its files are duplicates. Nothing else is.
    assert sum(outcome == "duplicate" for outcome in seen.values()) <= MAX_IMAGES
    assert set(seen.values()) <= {"skipped-already", "enrolled", "duplicate"}
    assert item_image_counts(service, prefix) == {f"{prefix}{name}": VIEWS for name in ITEMS}


def test_a_refused_file_is_reported_and_fails_the_run(
    service: httpx.Client, photo_views: Views, tmp_path: Path
) -> None:
    root, state = tmp_path / "photos", tmp_path / "elsewhere.json"
    write_files(root, {"cup/0.jpg": photo_views["coffee"][0], "cup/broken.jpg": b"not a JPEG"})
    url = str(service.base_url)
    done = run_cli(
        "enroll-folder", str(root), "--url", url, "--prefix", "r:", "--state", str(state)
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "item r:cup <- cup/ (2 image files)"
    assert re.fullmatch(r"enrolled +cup/0\.jpg: image [0-9a-f]{32}", lines[1])
    assert re.fullmatch(r"rejected +cup/broken\.jpg: HTTP 422: .+", lines[2])
    # [0, broken] refused whole, then each alone.
    assert lines[3] == (
        "summary: 2 files in 1 items: 1 enrolled, 0 duplicate, 0 skipped-already, 1 rejected; "
        "3 uploads"
    )
    assert state.is_file() and not (root / DEFAULT_STATE_NAME).exists()


def test_an_unreachable_service_is_a_message_not_a_traceback(
    photo_views: Views, tmp_path: Path
) -> None:
    write_files(tmp_path, {"cup/0.jpg": photo_views["coffee"][0]})
    done = run_cli("enroll-folder", str(tmp_path), "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: cannot talk to the service at http://127.0.0.1:")
    assert "Traceback" not in done.stderr


def test_a_keyed_service_takes_the_key_from_the_environment(
    photo_views: Views, tmp_path: Path
) -> None:
    # The tiny artifact: what is checked is the key reaching the service, not the embeddings.
    from app.api_keys import Scope, make_key
    from app.main import create_app
    from app.settings import Settings
    from tests.live_server import live_server
    from tests.tiny_artifact import write_tiny_artifact

    key, record = make_key("enroller", [Scope.READ, Scope.WRITE])
    settings = Settings(
        model_path=write_tiny_artifact(tmp_path / "model"),
        data_dir=tmp_path / "data",
        api_keys=record.hash_line(),
    )
    root = tmp_path / "photos"
    write_files(root, {"coffee/0.jpg": photo_views["coffee"][0]})
    with live_server(create_app(settings)) as url:
        refused = run_cli("enroll-folder", str(root), "--url", url)
        assert refused.returncode == 1 and "an API key is needed" in refused.stderr
        done = run_cli(
            "enroll-folder", str(root), "--url", url, env={"CENTROID_RETRIEVAL_API_KEY": key}
        )
        assert done.returncode == 0, done.stderr
        assert "1 enrolled, 0 duplicate, 0 skipped-already, 0 rejected" in done.stdout
        got = httpx.get(f"{url}/items/coffee", headers={"X-API-Key": key})
        assert got.json()["image_count"] == 1
