"""Fixtures shared across the suite: the real default model, real photos, live servers."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from tests import redis_server
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default" / "embedder.onnx"


def _ensure_shared_redis() -> subprocess.Popen[bytes] | None:
    """Make sure the shared test Redis answers: a private one for the session if none does.

    Called from ``pytest_configure``, which runs before any test module is collected (those
    import ``REDIS_URL`` from ``tests.redis_server`` and must see the final URL).
    """
    if redis_server.answers(redis_server.REDIS_URL):
        return None
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="test-redis-"))
    proc = redis_server.start_redis_server(port, directory, durable=False)
    redis_server.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    os.environ["TEST_REDIS_URL"] = redis_server.REDIS_URL
    return proc


_private_redis: subprocess.Popen[bytes] | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _private_redis
    _private_redis = _ensure_shared_redis()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_redis is not None:
        _private_redis.kill()
        _private_redis.wait()


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    """The real default ONNX model (built once if `make` has not built it yet)."""
    if not DEFAULT_MODEL.is_file():
        subprocess.run(
            [sys.executable, "-m", "model.build_default", "--out", str(DEFAULT_MODEL.parent)],
            cwd=ROOT,
            check=True,
        )
    return DEFAULT_MODEL


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def photo_views() -> dict[str, list[bytes]]:
    """Item name → 6 JPEG views (random crop/flip/colour/tilt) of one real photo per item."""
    from model.data.sample_photos import load_photo, random_view

    rng = random.Random(1234)
    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "camera",
        "coins",
        "china",
        "flower",
        "stereo_motorcycle",
        "immunohistochemistry",
    ]
    out: dict[str, list[bytes]] = {}
    for name in names:
        photo = load_photo(name)
        views = []
        for _ in range(6):
            view = random_view(photo, rng)
            view.thumbnail((320, 320))
            views.append(jpeg_bytes(view))
        out[name] = views
    return out


SERVE_LOCK = ROOT / "requirements" / "serve.txt"


@pytest.fixture(scope="session")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding ``requirements/serve.txt`` alone, as the Docker runtime stage
    installs it: no torch, and not the project (a test that installs the project into it
    uninstalls it again, so the next one sees only the lock file's packages).

    Created once per session: two tests need such an environment, and the install is their
    main cost.
    """
    venv = tmp_path_factory.mktemp("serve-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, "--disable-pip-version-check", "-r", str(SERVE_LOCK)], check=True, timeout=1200
    )
    return venv
