"""The fixed set of real photos every load test and benchmark sends.

Photos shipped inside scikit-image and scikit-learn (nothing downloaded), each turned into a few
views (crop, flip, colour, small tilt) with a fixed seed, so two runs send identical bytes.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from model.data.sample_photos import load_photo, random_view

# Varied natural scenes, colour and greyscale, all packaged with the libraries.
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "china", "flower")
# Longest side of a view: typical of a phone photo after client-side downscaling, and small
# enough that the load generator's own upload cost stays low.
MAX_SIDE = 480
JPEG_QUALITY = 90


@dataclass(frozen=True)
class PhotoSet:
    """``views[name]``: JPEG bytes of the views of one source photo."""

    views: dict[str, list[bytes]]

    def all_views(self) -> list[bytes]:
        """Every view, grouped by photo in ``PHOTO_NAMES`` order."""
        return [v for name in self.views for v in self.views[name]]


# (source photo, the run's random generator) → one view of it, before JPEG encoding.
ViewMaker = Callable[[Image.Image, random.Random], Image.Image]


def small_view(photo: Image.Image, rng: random.Random) -> Image.Image:
    """A random view of ``photo``, its longest side at most ``MAX_SIDE``."""
    view = random_view(photo, rng)
    view.thumbnail((MAX_SIDE, MAX_SIDE))
    return view


def build_photo_set(
    views_per_photo: int = 4, seed: int = 0, *, make_view: ViewMaker = small_view
) -> PhotoSet:
    """``views_per_photo`` JPEG views of each of ``PHOTO_NAMES``, made by ``make_view``."""
    rng = random.Random(seed)
    views: dict[str, list[bytes]] = {}
    for name in PHOTO_NAMES:
        photo = load_photo(name)
        encoded = []
        for _ in range(views_per_photo):
            view = make_view(photo, rng)
            buf = io.BytesIO()
            view.save(buf, format="JPEG", quality=JPEG_QUALITY)
            encoded.append(buf.getvalue())
        views[name] = encoded
    return PhotoSet(views)
