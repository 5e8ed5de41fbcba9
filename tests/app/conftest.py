"""A real service (real app, real uvicorn, real ONNX model) on a temporary data directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.live_server import live_server

ServiceFactory = Callable[..., AbstractContextManager[httpx.Client]]


@pytest.fixture
def service_factory(tmp_path: Path, default_model_path: Path) -> ServiceFactory:
    @contextmanager
    def make(*, wait_ready: bool = True, **overrides: Any) -> Iterator[httpx.Client]:
        values: dict[str, Any] = {"model_path": default_model_path, "data_dir": tmp_path / "data"}
        values.update(overrides)
        app = create_app(Settings(**values))
        with (
            live_server(app, wait_ready=wait_ready) as url,
            httpx.Client(base_url=url, timeout=60) as client,
        ):
            client.app = app  # type: ignore[attr-defined]  # lets tests reach the state
            yield client

    return make


@pytest.fixture
def client(service_factory: ServiceFactory) -> Iterator[httpx.Client]:
    with service_factory() as c:
        yield c
