"""The service in its own uvicorn process, on a free loopback port, with a throw-away store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def service_process(
    model_path: Path,
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    cwd: Path = REPO_ROOT,
    ready_timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Start ``uvicorn app.main:create_app`` (the production command) and yield its base URL
    once ``/readyz`` answers 200; stop it on exit. ``env`` adds or overrides ``RETRIEVAL_*``
    settings; by default the store is the embedded SQLite one under ``data_dir``. ``python`` and
    ``cwd`` let a test run it from another environment and source tree (the image's)."""
    port = free_port()
    full_env = {
        **os.environ,
        "RETRIEVAL_MODEL_PATH": str(model_path),
        "RETRIEVAL_DATA_DIR": str(data_dir),
        "RETRIEVAL_REDIS_URL": "",
        "RETRIEVAL_LOG_LEVEL": "warning",
        **(env or {}),
    }
    cmd = [python, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, ready_timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path is not None and not isinstance(log, int):
            log.close()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"service at {url} not ready within {timeout_s} s")
        time.sleep(0.2)
