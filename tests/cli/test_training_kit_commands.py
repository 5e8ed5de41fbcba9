"""train / evaluate / export where the training kit is not installed: a message, not a traceback."""

from __future__ import annotations

import pytest

from tests.cli.run_cli import run_cli


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_without_torch_the_kit_commands_name_the_train_extra(command: str) -> None:
    done = run_cli(command, "--help", blocked=["torch"])
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert f"centroid-retrieval {command} needs the training kit" in done.stderr
    assert "module 'torch' is not installed" in done.stderr
    assert 'pip install -e ".[serve,train]"' in done.stderr
