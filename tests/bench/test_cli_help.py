"""`--help` of the load test and the bench documents every flag they accept (the Makefile
targets only pass a few, so --help is where the rest are found)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import service_bench as bench
from bench.loadtest import __main__ as loadtest
from bench.service_process import REPO_ROOT, free_port


@pytest.mark.parametrize(
    ("command", "parser"),
    [
        ([sys.executable, "-m", "bench.loadtest", "--help"], loadtest._parser()),
        ([sys.executable, "-m", "bench.service_bench", "--help"], bench._parser()),
    ],
    ids=["loadtest", "bench"],
)
def test_help_documents_every_flag(command: list[str], parser: argparse.ArgumentParser) -> None:
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert flags
    for action in flags:
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings
        for flag in action.option_strings:
            assert flag in done.stdout, flag
        if action.default is not None and not action.required:
            # Every default is stated, so no one has to read the source for it.
            assert "default" in action.help, action.option_strings


def test_loadtest_waits_ready_timeout_for_readyz(tmp_path: Path) -> None:
    # Default: as long as compose lets the service rebuild its index before it is unhealthy.
    assert loadtest._parse(["--url", "http://x"]).ready_timeout == 300.0
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(SystemExit, match=r"/readyz did not answer 200 within 0.5 s"):
        loadtest.main(["--url", url, "--ready-timeout", "0.5", "--out", str(tmp_path)])
    assert 0.5 <= time.monotonic() - t0 < 10
