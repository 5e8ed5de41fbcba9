"""Real Redis servers for the suite.

``REDIS_URL`` is the shared server most Redis tests use (each test in its own key namespace):
``TEST_REDIS_URL`` when set, else 127.0.0.1:6379, which these machines and CI run. When nothing
answers there, ``tests/conftest.py`` starts a private server for the session and points
``TEST_REDIS_URL`` at it, so ``make test`` needs only the ``redis-server`` binary. Tests that
kill or restart Redis, or need persistence, start their own with :func:`start_redis_server`.
That start happens in ``pytest_configure``, after the conftests of the paths given on the command
line are imported but before any test module is: a conftest reads ``redis_server.REDIS_URL``
when its fixture runs, a test module may import the name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_URL = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis_server(
    port: int, directory: Path, *, durable: bool = True
) -> subprocess.Popen[bytes]:
    """A private redis-server on ``port``, once it answers PING.

    ``durable``: AOF fsynced on every write (a kill loses nothing acknowledged); otherwise no
    persistence at all, like the machines' shared server.
    """
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else []
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         *persistence, "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    return proc
