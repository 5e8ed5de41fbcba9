"""A real Milvus Lite *server* process on a loopback TCP port, which a test can kill and restart.

``pymilvus.MilvusClient("x.db")`` runs Milvus Lite inside the calling process; an outage test
needs Milvus to go away while the service keeps running, so this runs ``python -m milvus_lite
server`` (the package's own gRPC server) as a child process on a data directory, and clients
connect to ``uri`` as they would to a standalone Milvus. ``kill`` is SIGKILL (no shutdown
work), ``pause``/``resume`` SIGSTOP/SIGCONT (a server that accepts connections but never
answers), ``start`` again serves the same data directory on the same port.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live_server import free_port

START_TIMEOUT_S = 30.0


class MilvusLiteServer:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = data_dir.parent / f"milvus-lite-{self.port}.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start serving ``data_dir`` and return once the port accepts connections."""
        assert not self.running, "already running"
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir),
                 "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"Milvus Lite server did not start: {self._log.read_text()[-2000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: gone at once, nothing flushed beyond what the server had written."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)  # a paused process must be able to die
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def pause(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
