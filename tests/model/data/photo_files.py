"""Real photos (shipped with scikit-image) as small JPEG bytes, and a file writer."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photo(name: str, max_side: int = 64) -> Image.Image:
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    img.thumbnail((max_side, max_side))
    return img


def jpeg_bytes(img: Image.Image, **save_args: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **save_args)
    return buf.getvalue()


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path
