"""A small real-photo dataset from the photos scikit-image and scikit-learn ship (no download).

Used for demos, tests and benchmarks where Market-1501 or DeepFashion cannot be fetched: each
item is a photo (or a region of one), and its images are random views of it (crop, flip, colour
and small rotation), so a query view must be matched to the right item by content.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# Natural photos only (no synthetic patterns), colour or greyscale.
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "brick",
    "grass",
    "gravel",
    "clock",
    "moon",
    "page",
    "text",
    "cell",
)
SKLEARN_PHOTOS = ("china", "flower")


def photo_names() -> tuple[str, ...]:
    return SKIMAGE_PHOTOS + SKLEARN_PHOTOS


def load_photo(name: str) -> Image.Image:
    """One shipped photo as 8-bit RGB."""
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data

        arr = getattr(data, name)()
        if isinstance(arr, tuple):  # stereo_motorcycle: (left, right, disparity)
            arr = arr[0]
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (255 * (arr.astype(np.float64) / max(float(arr.max()), 1e-12))).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert("RGB")


def photo_regions(img: Image.Image, grid: tuple[int, int]) -> list[Image.Image]:
    """Split a photo into ``rows × cols`` regions (each a distinct 'item' for training tests)."""
    rows, cols = grid
    w, h = img.size
    return [
        img.crop((c * w // cols, r * h // rows, (c + 1) * w // cols, (r + 1) * h // rows))
        for r in range(rows)
        for c in range(cols)
    ]


def random_view(img: Image.Image, rng: random.Random, *, min_area: float = 0.55) -> Image.Image:
    """A plausible second photo of the same thing: crop, maybe flip, colour jitter, tilt."""
    w, h = img.size
    area = rng.uniform(min_area, 0.95)
    aspect = rng.uniform(0.8, 1.25)
    cw = max(8, min(w, round((area * w * h * aspect) ** 0.5)))
    ch = max(8, min(h, round((area * w * h / aspect) ** 0.5)))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    view = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.75, 1.25))
    view = ImageEnhance.Contrast(view).enhance(rng.uniform(0.75, 1.25))
    angle = rng.uniform(-8, 8)
    return view.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(128, 128, 128))


def write_views(
    root: Path,
    items: dict[str, Image.Image],
    views_per_item: int,
    seed: int,
    *,
    max_side: int = 320,
) -> dict[str, list[Path]]:
    """Write ``views_per_item`` JPEG views of each item to ``root/<item>/<n>.jpg``."""
    rng = random.Random(seed)
    out: dict[str, list[Path]] = {}
    for item, img in items.items():
        folder = root / item
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n in range(views_per_item):
            view = random_view(img, rng)
            view.thumbnail((max_side, max_side))
            path = folder / f"{n:03d}.jpg"
            view.save(path, format="JPEG", quality=90)
            paths.append(path)
        out[item] = paths
    return out


def write_gallery_query_folder(
    root: Path,
    names: Sequence[str] | None = None,
    *,
    gallery_views: int = 4,
    query_views: int = 2,
    seed: int = 0,
    grid: tuple[int, int] = (1, 1),
) -> Path:
    """``root/gallery/<item>/*.jpg`` and ``root/query/<item>/*.jpg``.

    One item per photo, or with ``grid=(rows, cols)`` one per region of each photo (a harder
    set: regions of one photo share colours and texture).
    """
    items = {
        f"{name}-{i}" if grid != (1, 1) else name: region
        for name in (names or photo_names())
        for i, region in enumerate(photo_regions(load_photo(name), grid))
    }
    write_views(root / "gallery", items, gallery_views, seed)
    write_views(root / "query", items, query_views, seed + 1)
    return root
