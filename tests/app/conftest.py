"""A real service (real app, real uvicorn, real ONNX Runtime) on a temporary data directory.

The service runs the tiny artifact (``tests/tiny_artifact.py``) unless a test asks for
``model_path=default_model_path``: only what the EfficientNet model's quality or its parity with
``model/`` can show needs it. Tests that request ``default_model_path`` are marked
``real_model``, so ``pytest tests/app -m "not real_model"`` runs the fast rest alone.

The app tests rank in ``centroid`` mode unless they ask for another (``RETRIEVAL_RANKING``, set
in the environment while this package's tests run, for every ``Settings`` they build, launched
processes included, and restored after its last test): their oracle is the centroid ranking.
The service's default, ``two_stage``, is checked against its own oracle by
``test_search_evidence.py``, which asks for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.live_server import free_port, live_server
from tests.milvus_lite_server import MilvusLiteServer
from tests.redis_server import start_redis_server
from tests.tiny_artifact import write_tiny_artifact

ServiceFactory = Callable[..., AbstractContextManager[httpx.Client]]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="package", autouse=True)
def _centroid_ranking() -> Iterator[None]:
    # Package scope: set before any of the package's module-scoped services start, and undone
    # after its last test, so tests elsewhere in the session see the real defaults.
    with pytest.MonkeyPatch.context() as mp:
        if "RETRIEVAL_RANKING" not in os.environ:
            mp.setenv("RETRIEVAL_RANKING", "centroid")
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Derived from the fixture, so no test can use the real model and be missing the mark.
    for item in items:
        if HERE in item.path.parents and "default_model_path" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_model)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("tiny-artifact"))


@pytest.fixture
def service_factory(tmp_path: Path, tiny_model_path: Path) -> ServiceFactory:
    @contextmanager
    def make(*, wait_ready: bool = True, **overrides: Any) -> Iterator[httpx.Client]:
        values: dict[str, Any] = {"model_path": tiny_model_path, "data_dir": tmp_path / "data"}
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


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server (tests kill or stall it, so not the shared one on 6379): its URL
    and process."""
    port = free_port()
    proc = start_redis_server(port, tmp_path)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusLiteServer]:
    """A Milvus Lite server process of the module's own (killable and restartable)."""
    server = MilvusLiteServer(Path(tmp_path_factory.mktemp("milvus")) / "data")
    server.start()
    yield server
    server.kill()
