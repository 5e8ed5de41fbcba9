"""Real photos for the export parity check, read through the service's own decode path."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from artifact.image_decode import decode_image

# A few varied scenes shipped with scikit-image (portrait, animal, food, objects, greyscale).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


def skimage_photo_bytes(names: Sequence[str] = SKIMAGE_PHOTOS) -> list[bytes]:
    """PNG bytes of scikit-image's sample photos (shipped in the package, no download)."""
    from skimage import data  # imported lazily: only the training/export side has scikit-image

    out = []
    for name in names:
        arr = getattr(data, name)()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def load_parity_photos(folder: Path | None = None, limit: int = 8) -> list[Image.Image]:
    """Decoded RGB photos: from ``folder`` (jpg/png/webp) if given, else scikit-image's samples."""
    if folder is None:
        blobs = skimage_photo_bytes()
    else:
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
        )[:limit]
        if not files:
            raise FileNotFoundError(f"no photos (jpg/png/webp) in {folder}")
        blobs = [p.read_bytes() for p in files]
    return [decode_image(b) for b in blobs]
