"""The service in its own uvicorn process, on a free loopback port, with a throw-away store
(a temporary SQLite file, or a Redis namespace the caller drops afterwards)."""

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

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    redis_url: str | None = None,
    redis_namespace: str | None = None,
) -> Iterator[str]:
    """Start ``python -m app.server`` (the production command) and yield its base URL
    once ``/readyz`` answers 200; stop it on exit. The store is the embedded SQLite one under
    ``data_dir``, or with ``redis_url`` the Redis store under ``redis_namespace`` (required:
    the default namespace may hold a real deployment's data). ``env`` adds or overrides
    ``RETRIEVAL_*`` settings. ``python`` and ``cwd`` let a test run it from another environment
    and source tree (the image's)."""
    if redis_url and not redis_namespace:
        raise ValueError("a Redis store needs its own redis_namespace")
    port = free_port()
    store_env = {
        # Set either way, so a RETRIEVAL_REDIS_URL in the caller's environment cannot switch
        # the store behind the caller's back.
        "RETRIEVAL_REDIS_URL": redis_url or "",
        **({"RETRIEVAL_REDIS_NAMESPACE": redis_namespace or ""} if redis_url else {}),
    }
    full_env = {
        **os.environ,
        "RETRIEVAL_MODEL_PATH": str(model_path),
        "RETRIEVAL_DATA_DIR": str(data_dir),
        "RETRIEVAL_LOG_LEVEL": "warning",
        **store_env,
        **(env or {}),
    }
    cmd = [python, "-m", "app.server", "--host", "127.0.0.1", "--port", str(port)]
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, ready_timeout_s)
        yield url
    finally:
        stop_process(proc)
        if log_path is not None and not isinstance(log, int):
            log.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s; a no-op if it has exited."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout_s: float,
    *,
    probe: str = "/readyz",
    poll_s: float = 0.2,
) -> None:
    """Return once ``url + probe`` answers 200; RuntimeError if the process exits first or
    ``timeout_s`` passes (with the probe's last answer)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with code {proc.returncode} before it was ready")
        try:
            response = httpx.get(f"{url}{probe}", timeout=2)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            # /readyz says what the service is still waiting for (store, model, index).
            raise RuntimeError(
                f"service at {url} not ready within {timeout_s} s; last {probe}: {last}"
            )
        time.sleep(poll_s)
