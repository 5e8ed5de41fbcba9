"""``python -m app.server``, the launcher of the CLI, the image and the benches: it raises the
open-file limit to its hard limit at start and keeps the connection cap below it."""

from __future__ import annotations

import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.server import FD_RESERVE, connection_cap
from tests.app.launched_server import launched


@contextmanager
def lowered_open_file_limit(soft: int) -> Iterator[None]:
    """Children started meanwhile inherit ``soft`` (the hard limit stays)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


def test_the_cap_stays_below_the_open_file_limit() -> None:
    assert connection_cap(4096, 20000) == 4096
    assert connection_cap(4096, 1024) == 1024 - FD_RESERVE
    assert connection_cap(4096, 100) == 1  # a tiny limit still serves
    assert connection_cap(10, resource.RLIM_INFINITY) == 10


def test_the_open_file_limit_is_raised_to_the_hard_limit_at_start(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 2 * 512:
        pytest.skip(f"hard open-file limit {hard}: too low to lower for the test")
    with (
        lowered_open_file_limit(512),
        launched(tiny_model_path, tmp_path, {"RETRIEVAL_MAX_CONNECTIONS": "1000000"}) as server,
    ):
        soft_now, hard_now = _open_files(server.proc.pid)
        log = server.log()
    assert soft_now == hard_now == hard
    cap = int(re.search(r"connections: at most (\d+) open", log).group(1))  # type: ignore[union-attr]
    assert cap == connection_cap(1_000_000, hard) < hard
