"""The service started the production way, ``python -m app.server``, in its own process; and raw
sockets to talk to it the way slow or broken clients do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.service_process import stop_process
from bench.service_process import wait_ready as wait_until_up
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Launched:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock.settimeout(timeout)
        return sock


@contextmanager
def launched(
    model_path: Path, tmp_path: Path, env: dict[str, str], *, wait_ready: bool = True
) -> Iterator[Launched]:
    """``python -m app.server`` on a free port with ``env`` over a throw-away SQLite store;
    yielded once ``/readyz`` (``wait_ready``) or ``/healthz`` answers 200."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RETRIEVAL_MODEL_PATH": str(model_path),
        "RETRIEVAL_DATA_DIR": str(tmp_path / f"data-{port}"),
        "RETRIEVAL_REDIS_URL": "",
        "RETRIEVAL_ALLOW_GPU": "false",
        "RETRIEVAL_LOG_LEVEL": "info",
        **env,
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.server", "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Launched(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        probe = "/readyz" if wait_ready else "/healthz"
        try:
            wait_until_up(proc, server.url, 60, probe=probe, poll_s=0.05)
        except RuntimeError as exc:
            pytest.fail(f"{exc}: {server.log()}")
        yield server
    finally:
        stop_process(proc)


def read_until_closed(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before."""
    start = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return time.monotonic() - start, data
