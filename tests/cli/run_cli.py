"""Run ``centroid-retrieval`` in a fresh interpreter, as users run it, optionally without some
installed modules (as in an install without the extra that brings them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
