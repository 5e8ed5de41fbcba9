"""Fixtures of the bench tests: the tiny torch-free artifact (tests/tiny_artifact.py), so the
bench's own logic is tested in seconds; the default model only where its speed is the point."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_artifact import write_tiny_artifact


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("tiny-artifact"))
