"""deploy/redis.conf loads in a real redis-server and sets the durability it documents."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

CONF = Path(__file__).resolve().parents[2] / "deploy" / "redis.conf"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_redis_conf_gives_aof_everysec_noeviction(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = _free_port()
    # The file as shipped, with only what must differ outside a container overridden.
    cmd = [binary, str(CONF), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, "redis-server refused deploy/redis.conf"
                assert time.monotonic() < deadline
                time.sleep(0.05)
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["save"] == ""
        client.set("probe", "1")
        client.execute_command("BGREWRITEAOF")
        # The append-only file really is written to the data directory (the named volume).
        deadline = time.monotonic() + 10
        while not list((tmp_path / "appendonlydir").glob("*.aof")):
            assert time.monotonic() < deadline, "no AOF written"
            time.sleep(0.05)
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
