"""Fixtures shared across the suite: the real default model, real photos, live servers."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "default" / "embedder.onnx"


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
