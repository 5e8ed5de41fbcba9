"""Real embeddings of crops of the shipped photos, and the large gallery expanded from them.

The approximate-index bench's real-data protocol (issue 11): regions cut from the photos
scikit-image and scikit-learn ship are the real items; each gets several random views (crop,
flip, colour, tilt: ``model.data.sample_photos.random_view``), written as JPEG and decoded by
``artifact.image_decode.preprocess_bytes``, so the pixels are the service's, then embedded by
the model's ``OnnxEmbedder``. From them:

* ``within_item_spread``: the per-dimension standard deviation of a view's embedding around
  its item's mean embedding (pooled over items; the views' differences are what makes two
  images of one thing differ);
* ``expanded_gallery``: every real gallery view becomes a centre of about ``items_per_base``
  items, each that view plus noise of that spread, so a million-item gallery keeps the real
  embeddings' geometry (which directions items differ in, how close photos are to each other)
  where clustered random data has none; held-out queries are fresh noise draws;
* the all-real set: every real gallery view an item, the held-out real views the queries.

Embedding ~10^4 crops takes about a minute on 2 cores, so the embeddings are cached as one
``.npy`` file under a cache directory, named by the model (name, version, file digest) and a
digest of the crop recipe: another model or recipe is another file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from bench.perturbed_centres import PerturbedCentres
from model.data.sample_photos import load_photo, photo_names, random_view

EMBED_BATCH = 64


@dataclass(frozen=True)
class CropRecipe:
    """How the real items and their views are cut: all of it goes into the cache key.

    Each of ``photos`` gives ``regions_per_photo`` items: a random box covering a fraction in
    ``region_area`` of the photo (aspect ratio in ``region_aspect``). Each item gets
    ``gallery_views + query_views`` random views, shrunk to at most ``max_side`` pixels and
    written as JPEG at ``jpeg_quality``; the first ``gallery_views`` are its gallery views,
    the rest are held out as queries.
    """

    photos: tuple[str, ...] = field(default_factory=photo_names)
    regions_per_photo: int = 125
    region_area: tuple[float, float] = (0.05, 0.3)
    region_aspect: tuple[float, float] = (0.75, 1.33)
    gallery_views: int = 4
    query_views: int = 1
    max_side: int = 320
    jpeg_quality: int = 90
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.photos or self.regions_per_photo < 1:
            raise ValueError("a recipe needs at least one photo and one region per photo")
        if self.gallery_views < 2 or self.query_views < 0:
            raise ValueError("the spread needs >= 2 gallery views per item; query views >= 0")

    @property
    def items(self) -> int:
        return len(self.photos) * self.regions_per_photo

    @property
    def views_per_item(self) -> int:
        return self.gallery_views + self.query_views

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def view_jpegs(self) -> Iterator[bytes]:
        """``items x views_per_item`` JPEG files, item-major (photo order, then region)."""
        rng = random.Random(self.seed)
        for name in self.photos:
            photo = load_photo(name)
            for _ in range(self.regions_per_photo):
                region = _random_region(photo, rng, self.region_area, self.region_aspect)
                for _ in range(self.views_per_item):
                    view = random_view(region, rng)
                    view.thumbnail((self.max_side, self.max_side))
                    buf = io.BytesIO()
                    view.save(buf, format="JPEG", quality=self.jpeg_quality)
                    yield buf.getvalue()


def _random_region(
    photo: Image.Image,
    rng: random.Random,
    area: tuple[float, float],
    aspect: tuple[float, float],
) -> Image.Image:
    w, h = photo.size
    a, r = rng.uniform(*area) * w * h, rng.uniform(*aspect)
    cw = max(16, min(w, round(math.sqrt(a * r))))
    ch = max(16, min(h, round(math.sqrt(a / r))))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return photo.crop((x0, y0, x0 + cw, y0 + ch))


@dataclass(frozen=True)
class RealEmbeddings:
    """``views``: ``(items, views_per_item, dim)`` float32 unit rows, as ``recipe`` orders
    them. ``embed_s``: seconds the embedding took (0 when read from ``cache_file``)."""

    recipe: CropRecipe
    views: npt.NDArray[np.float32]
    model: str
    cache_file: Path
    embed_s: float

    @property
    def dim(self) -> int:
        return int(self.views.shape[2])

    @property
    def gallery_views(self) -> npt.NDArray[np.float32]:
        """``(items, gallery_views, dim)``."""
        return self.views[:, : self.recipe.gallery_views]

    def gallery(self) -> npt.NDArray[np.float32]:
        """``(items x gallery_views, dim)``: every real gallery view, item-major."""
        return np.ascontiguousarray(self.gallery_views.reshape(-1, self.dim))

    def held_out(self) -> npt.NDArray[np.float32]:
        """``(items x query_views, dim)``: every held-out real view, item-major."""
        return np.ascontiguousarray(
            self.views[:, self.recipe.gallery_views :].reshape(-1, self.dim)
        )


def model_key(model_path: Path, embedder: OnnxEmbedder) -> str:
    """``<model name>-<version>-<12 hex of the file's SHA-256>``, safe in a file name."""
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:12]
    key = f"{embedder.spec.model_name}-{embedder.spec.model_version}-{digest}"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", key)


def real_embeddings(model_path: Path, recipe: CropRecipe, cache_dir: Path) -> RealEmbeddings:
    """The recipe's views embedded by the model at ``model_path``: from the cache when there,
    else embedded (progress on stderr) and cached."""
    # No spinning: the crops are cut and decoded on this thread between the model's calls.
    embedder = OnnxEmbedder(model_path, allow_gpu=False, allow_spinning=False)
    key = model_key(model_path, embedder)
    cache_file = cache_dir / f"real-embeddings-{key}-{recipe.digest()}.npy"
    shape = (recipe.items, recipe.views_per_item, embedder.embedding_dim)
    if cache_file.is_file():
        cached = np.load(cache_file)
        if cached.shape == shape and cached.dtype == np.float32:
            return RealEmbeddings(recipe, cached, key, cache_file, 0.0)
    start = time.perf_counter()
    rows = _embed_all(embedder, recipe)
    views = rows.reshape(shape)
    embed_s = time.perf_counter() - start
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so an interrupted run leaves no truncated cache behind.
    partial = cache_file.with_suffix(".partial.npy")
    np.save(partial, views)
    partial.replace(cache_file)
    return RealEmbeddings(recipe, views, key, cache_file, embed_s)


def _embed_all(embedder: OnnxEmbedder, recipe: CropRecipe) -> npt.NDArray[np.float32]:
    """``(items x views_per_item, dim)`` float32 unit rows."""
    total = recipe.items * recipe.views_per_item
    out = np.empty((total, embedder.embedding_dim), dtype=np.float32)
    batch: list[npt.NDArray[np.uint8]] = []
    done = 0
    start = time.perf_counter()
    for jpeg in recipe.view_jpegs():
        batch.append(preprocess_bytes(jpeg, embedder.spec))
        if len(batch) == EMBED_BATCH:
            out[done : done + len(batch)] = embedder.embed(np.stack(batch))
            done += len(batch)
            batch.clear()
            if done % (EMBED_BATCH * 32) == 0:
                rate = done / (time.perf_counter() - start)
                print(f"embedded {done}/{total} crops, {rate:.0f}/s", file=sys.stderr, flush=True)
    if batch:
        out[done : done + len(batch)] = embedder.embed(np.stack(batch))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    unit: npt.NDArray[np.float32] = (out / norms).astype(np.float32, copy=False)
    return unit


def within_item_spread(views: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(dim,)`` float32: per dimension, the standard deviation of a view around its item's
    mean, pooled over items (``views``: ``(items, views, dim)``, >= 2 views each; unbiased:
    each item's mean costs one degree of freedom)."""
    n_items, n_views, _ = views.shape
    if n_views < 2:
        raise ValueError("the within-item spread needs at least 2 views per item")
    v = views.astype(np.float64)
    residual = v - v.mean(axis=1, keepdims=True)
    var = (residual**2).sum(axis=(0, 1)) / (n_items * (n_views - 1))
    sigma: npt.NDArray[np.float32] = np.sqrt(var).astype(np.float32)
    return sigma


def expanded_gallery(
    real: RealEmbeddings, items: int, items_per_base: int, seed: int
) -> PerturbedCentres:
    """``items`` rows around ``items / items_per_base`` of the real gallery views (a seeded
    choice among all of them; all when there are fewer), with noise of their measured
    within-item spread per dimension."""
    if items_per_base < 1:
        raise ValueError(f"items_per_base must be >= 1, got {items_per_base}")
    bases = real.gallery()
    n_bases = max(1, min(bases.shape[0], round(items / items_per_base)))
    chosen = np.random.default_rng((seed, 4)).permutation(bases.shape[0])[:n_bases]
    centres = np.ascontiguousarray(bases[np.sort(chosen)])
    return PerturbedCentres(centres, within_item_spread(real.gallery_views), items, seed)
