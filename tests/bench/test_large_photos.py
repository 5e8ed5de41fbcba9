"""≈ 1 MP uploads: real JPEGs of the requested size, the same bytes for the same seed."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bench.large_photos import build_large_photo_set
from bench.loadtest.photo_set import PHOTO_NAMES


def test_default_views_are_one_megapixel_jpegs_of_camera_like_size() -> None:
    photos = build_large_photo_set(1)
    assert list(photos.views) == list(PHOTO_NAMES)
    for views in photos.views.values():
        (data,) = views
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.mode == "RGB"
        assert img.width * img.height == pytest.approx(1e6, rel=0.01)
        # A camera JPEG of 1 MP at quality 90 is ~100-400 kB; grain keeps these in that range.
        assert 100_000 < len(data) < 400_000


def test_size_follows_megapixels_same_seed_same_bytes() -> None:
    photos = build_large_photo_set(2, megapixels=0.05)
    small = photos.all_views()
    assert len(small) == 2 * len(PHOTO_NAMES)
    for data in small:
        w, h = Image.open(io.BytesIO(data)).size
        assert w * h == pytest.approx(50_000, rel=0.02)
    assert build_large_photo_set(2, megapixels=0.05).views == photos.views
    assert build_large_photo_set(2, megapixels=0.05, seed=1).views != photos.views
    with pytest.raises(ValueError):
        build_large_photo_set(1, megapixels=0)
