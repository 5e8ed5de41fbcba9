"""Real photos for the export parity check, as encoded files: the gate decodes them through
``preprocess_bytes`` with the exported model's own contract, the service's path, JPEG draft
included when the contract has it on."""

from __future__ import annotations

import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from PIL import Image

# A few varied scenes shipped with scikit-image (portrait, animal, food, objects, greyscale).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
# scikit-image's two large photos, as the JPEG files it ships (1411×1411 and 1000×872): large
# enough for a JPEG draft at the ratios the bench measures, so the gate runs that path too.
SKIMAGE_JPEG_FILES = ("retina.jpg", "hubble_deep_field.jpg")


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


def skimage_jpeg_bytes(names: Sequence[str] = SKIMAGE_JPEG_FILES) -> list[bytes]:
    """The bytes of JPEG files scikit-image ships in its ``data`` folder."""
    folder = resources.files("skimage") / "data"
    return [(folder / name).read_bytes() for name in names]


def load_parity_photos(folder: Path | None = None, limit: int = 8) -> list[bytes]:
    """Encoded photos: from ``folder`` (jpg/png/webp, at most ``limit``) if given, else
    scikit-image's samples (six as PNG, two large JPEGs)."""
    if folder is None:
        return skimage_photo_bytes() + skimage_jpeg_bytes()
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
    )[:limit]
    if not files:
        raise FileNotFoundError(f"no photos (jpg/png/webp) in {folder}")
    return [p.read_bytes() for p in files]
