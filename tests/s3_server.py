"""A real S3-compatible HTTP server for the suite: moto's ``moto_server`` (requirements/dev.txt)
in a subprocess on a loopback port. No MinIO binary exists here; moto speaks the same S3 REST
API the minio client sends. ``stop`` kills it (an outage: connections are refused), ``start``
brings it back on the same port, empty (moto keeps its state in memory)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live_server import free_port

REGION = "us-east-1"
ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-0123456789"


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if binary is None:
            pytest.fail("moto_server is not installed (moto[server] in requirements/dev.txt)")
        self._proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"moto_server on port {self.port} did not start")
            time.sleep(0.05)
        # moto loads its S3 backend on the first S3 request, which takes a second or more on
        # a busy machine: pay it here, not in a test's first call with a short timeout.
        with urllib.request.urlopen(f"{self.endpoint}/", timeout=30) as response:
            response.read()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
