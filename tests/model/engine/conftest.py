"""A real-photo folder dataset for the training tests: items are regions of shipped photos.

``train/<item>/`` from some photos, ``gallery/<item>/`` and ``query/<item>/`` from *other*
photos, so evaluation is on items (and whole photos) the network never saw.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from model.data.sample_photos import load_photo, photo_regions, write_views

TRAIN_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "coins",
    "hubble_deep_field", "immunohistochemistry", "brick", "clock",
)  # fmt: skip
HELDOUT_PHOTOS = ("china", "flower", "stereo_motorcycle", "retina", "moon", "page")
GRID = (3, 3)


def regions_of(names: tuple[str, ...]) -> dict[str, object]:
    return {
        f"{name}-{i}": region
        for name in names
        for i, region in enumerate(photo_regions(load_photo(name), GRID))
    }


def write_photo_folder(root: Path, *, train_views: int = 4, seed: int = 0) -> Path:
    train = regions_of(TRAIN_PHOTOS)
    held = regions_of(HELDOUT_PHOTOS)
    write_views(root / "train", train, train_views, seed, max_side=96)  # type: ignore[arg-type]
    write_views(root / "gallery", held, 3, seed + 1, max_side=96)  # type: ignore[arg-type]
    write_views(root / "query", held, 2, seed + 2, max_side=96)  # type: ignore[arg-type]
    return root


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 training items × 4 views; 54 held-out items × (3 gallery + 2 query) views."""
    return write_photo_folder(tmp_path_factory.mktemp("photo_folder"))
