"""≈ 1 MP JPEG uploads cut from the shipped photos: the size a phone app sends after its own
downscaling, and what the issue's independent probe sent.

The shipped photos (scikit-image, scikit-learn) are 0.1–0.4 MP, so each view (random crop,
flip, colour, small tilt: ``model.data.sample_photos.random_view``, as the load test's) is
scaled up to about ``megapixels`` with its aspect ratio kept, then given light seeded grain
(σ = ``GRAIN_SIGMA`` grey levels): an upscaled photo is smoother than a camera's, and without
grain its JPEG would carry fewer bytes per pixel (less to upload, less entropy to decode) than
a real upload of the same size. Same seed, same bytes.
"""

from __future__ import annotations

import random
from functools import partial

import numpy as np
from PIL import Image

from bench.loadtest.photo_set import PhotoSet, build_photo_set
from model.data.sample_photos import random_view

GRAIN_SIGMA = 3.0


def large_view(photo: Image.Image, rng: random.Random, *, megapixels: float) -> Image.Image:
    """One random view of ``photo``, resized to ``≈ megapixels`` (aspect kept), with grain."""
    view = random_view(photo, rng)
    w, h = view.size
    scale = (megapixels * 1e6 / (w * h)) ** 0.5
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    view = view.resize(size, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(rng.getrandbits(32))
    grain = noise.standard_normal((size[1], size[0], 3), dtype=np.float32) * GRAIN_SIGMA
    # (H, W, 3) float32 → uint8, clipped: grain never wraps around at black or white.
    pixels = np.clip(np.asarray(view, dtype=np.float32) + grain, 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels)


def build_large_photo_set(
    views_per_photo: int = 4, *, megapixels: float = 1.0, seed: int = 0
) -> PhotoSet:
    """``views_per_photo`` JPEG views of ≈ ``megapixels`` each, of every load-test photo."""
    if megapixels <= 0:
        raise ValueError(f"megapixels must be > 0, got {megapixels}")
    return build_photo_set(
        views_per_photo, seed, make_view=partial(large_view, megapixels=megapixels)
    )
