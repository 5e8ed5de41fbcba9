"""No answer names the server's files, hosts or ports: the Redactor on its own, and /readyz and
the 503s of real servers (``python -m app.server``) that cannot load their model, cannot reach
their Redis, or cannot open their SQLite file; the log still has the detail."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
from PIL import Image

from app.error_redaction import Redactor
from app.settings import Settings
from tests.app.launched_server import Launched, launched
from tests.live_server import free_port


def test_the_configured_paths_and_addresses_become_placeholders(tmp_path: Path) -> None:
    settings = Settings(
        model_path=tmp_path / "m" / "embedder.onnx",
        data_dir=tmp_path / "data",
        redis_url="redis://cache.internal:6390/0",
    )
    redact = Redactor(settings)
    assert redact(f"ContractError: {tmp_path}/m/embedder.onnx is not ONNX") == (
        "ContractError: <model file> is not ONNX"
    )
    assert redact(f"cannot open SQLite store {tmp_path}/data/store.sqlite3: locked") == (
        "cannot open SQLite store <store file>: locked"
    )
    assert redact("Error 111 connecting to cache.internal:6390. Refused.") == (
        "Error 111 connecting to <redis>. Refused."
    )
    # Paths and addresses it was not told about too; ordinary words and media types stay.
    assert redact("see /var/lib/x.db or 10.0.0.7:5432") == "see <path> or <host:port>"
    assert redact("expected multipart/form-data; metadata v1") == (
        "expected multipart/form-data; metadata v1"
    )


def _problem_until(server: Launched, needle: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(server.url + "/readyz", timeout=5)
        assert answer.status_code == 503, answer.text
        if needle in answer.text:
            return answer.text
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.05)


def _search(server: Launched) -> httpx.Response:
    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, "JPEG")
    files = {"image": ("q.jpg", out.getvalue(), "image/jpeg")}
    return httpx.post(server.url + "/search", files=files, timeout=10)


def test_a_model_that_does_not_load_is_not_named(tmp_path: Path) -> None:
    model = tmp_path / "secret-dir" / "embedder.onnx"
    model.parent.mkdir()
    model.write_bytes(b"not a model")
    with launched(model, tmp_path, {}, wait_ready=False) as server:
        readyz = _problem_until(server, "failed")
        search = _search(server)
        log = server.log()
    assert search.status_code == 503
    for body in (readyz, search.text):
        assert "secret-dir" not in body and str(tmp_path) not in body, body
        assert "<model file>" in body
    assert "secret-dir" in log  # the operator still reads where


def test_an_unreachable_redis_is_not_named(tiny_model_path: Path, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {"RETRIEVAL_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    with launched(tiny_model_path, tmp_path, env, wait_ready=False) as server:
        readyz = _problem_until(server, "waiting for the store")
        search = _search(server)
        log = server.log()
    assert search.status_code == 503
    for body in (readyz, search.text):
        assert str(port) not in body and "127.0.0.1" not in body, body
    assert f"127.0.0.1:{port}" in log


def test_a_store_file_that_cannot_open_is_not_named(tiny_model_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "private-data"
    (data / "store.sqlite3").mkdir(parents=True)  # a directory where the file should be
    env = {"RETRIEVAL_DATA_DIR": str(data)}
    with launched(tiny_model_path, tmp_path, env, wait_ready=False) as server:
        readyz = _problem_until(server, "Error")
        search = _search(server)
    assert search.status_code == 503
    for body in (readyz, search.text):
        assert "private-data" not in body and str(tmp_path) not in body, body
