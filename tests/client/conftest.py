"""The real service the enroll-folder tests talk to (module-scoped: one start per module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.enroll_service import enroll_service


@pytest.fixture(scope="module")
def service(
    default_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """The real app and default model under uvicorn, at most two files per enrollment."""
    with enroll_service(default_model_path, tmp_path_factory.mktemp("data")) as client:
        yield client
