"""A private ``redis-server`` for a benchmark: on its own port, with its files in a directory."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from bench.service_process import REPO_ROOT

SHIPPED_CONF = REPO_ROOT / "deploy" / "redis.conf"  # AOF, appendfsync everysec


def start_redis(
    port: int, directory: Path, *, conf: Path | None = SHIPPED_CONF, start_timeout_s: float = 20
) -> subprocess.Popen[bytes]:
    """``redis-server [conf]`` on ``port`` with its files in ``directory``; ``conf=None``: no
    persistence at all (a benchmark's throw-away data)."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    settings = [str(conf)] if conf is not None else ["--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        ["redis-server", *settings, "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + start_timeout_s
    try:
        while True:
            try:
                # Loading a large AOF answers LOADING errors until done: wait for a real PONG.
                if client.ping():
                    return proc
            except redis.RedisError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
    finally:
        client.close()
