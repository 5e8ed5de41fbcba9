"""`make bench BENCH_ARGS=...` and `make loadtest LOADTEST_ARGS=...` hand their arguments to the
tools (the README documents every flag through them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Taken as built, so the test runs the target's own command and never a set-up step.
PREREQUISITES = (".venv/.installed", "models/default/embedder.onnx")


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    old = [arg for path in PREREQUISITES for arg in ("-o", path)]
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *old, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("target", "variable", "prog", "flag"),
    [
        ("bench", "BENCH_ARGS", "python -m bench.service_bench", "--store"),
        ("loadtest", "LOADTEST_ARGS", "python -m bench.loadtest", "--levels"),
    ],
)
def test_target_passes_its_arguments_through(
    target: str, variable: str, prog: str, flag: str
) -> None:
    done = _make(target, f"{variable}=--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {prog}"), done.stdout[:500]
    assert flag in done.stdout


def test_an_argument_the_tool_refuses_fails_the_target() -> None:
    # Proves the arguments reach the tool: argparse's own refusal comes back through make.
    done = _make("bench", "BENCH_ARGS=--no-such-flag")
    assert done.returncode != 0
    assert "unrecognized arguments: --no-such-flag" in done.stderr
