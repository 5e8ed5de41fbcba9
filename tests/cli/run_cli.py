"""Run ``centroid-retrieval`` in a fresh interpreter, as users run it, optionally without some
installed modules (as in an install without the extra that brings them); wait for its service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.live_server import free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
# `import X` fails with ModuleNotFoundError when sys.modules["X"] is None, exactly as when X is
# not installed, and importlib.util.find_spec("X") answers None.
LAUNCHER = """\
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from cli.main import main
raise SystemExit(main(sys.argv[1:]))
"""


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment plus ``extra``, with the checkout importable from any directory."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def cli_command(*args: str, blocked: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-c", LAUNCHER.format(blocked=tuple(blocked)), *args]


def run_cli(
    *args: str,
    blocked: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(*args, blocked=blocked),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def serving(command: Sequence[str], env: dict[str, str], cwd: Path) -> Iterator[str]:
    """Run ``command serve`` on a free port; yield its URL once /readyz answers 200.

    Fails at once, with the process's stderr, if it exits before; stopped with SIGINT (Ctrl-C)
    at the end, after which it must have exited 0.
    """
    port = free_port()
    proc = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    ready = False
    try:
        while proc.poll() is None:
            if _ready(url, deadline):
                ready = True
                break
        if ready:
            yield url
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert ready, f"serve exited with {proc.returncode} before it was ready: {stderr}"
    assert proc.returncode == 0, stderr


def _ready(url: str, deadline: float) -> bool:
    # A second at a time, so that a process that died is seen at once.
    try:
        wait_until_ready(url, min(deadline, time.monotonic() + 1))
    except RuntimeError:
        if time.monotonic() > deadline:
            raise
        return False
    return True
