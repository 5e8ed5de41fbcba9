"""The real-photo folders the answer rules are designed and measured on, embedded in memory.

Items are the photos scikit-image and scikit-learn ship (``model.data.sample_photos``), or, for
the harder folder, the four quarters of each (a 2×2 grid: items cut from one photo share its
colours and texture, so they are one another's hard negatives). Every image of an item is a
random view of it (crop, flip, colour jitter, tilt: ``random_view``), shrunk to at most
``MAX_SIDE`` pixels and written as JPEG, then decoded by ``artifact.image_decode.preprocess_bytes``
and embedded by the model's ``OnnxEmbedder``: the pixels and embeddings the service would make.

Embeddings are kept as the model outputs them (raw, not normalised): a centroid is
``normalize(sum of raw)`` as the store builds it, a set query the same, and the raw norm is a
query-quality feature. Nothing is written to disk unless a cache directory is given
(:func:`cached_folder`): then each folder's embeddings are kept in one ``.npz`` named by the
model file's digest and the recipe, so a later run with the same model and recipe reads them
instead of embedding again (the bench's embedding is most of its time on a CPU).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from index.match_confidence import input_std
from model.data.sample_photos import load_photo, photo_names, photo_regions, random_view

MAX_SIDE = 320
JPEG_QUALITY = 90
EMBED_BATCH = 32


@dataclass(frozen=True)
class FolderRecipe:
    """One folder: ``grid`` cells of each of ``photos`` are the items; each item gets
    ``gallery_views`` gallery and ``query_views`` query views (seeded by ``seed``)."""

    name: str
    grid: tuple[int, int] = (1, 1)
    gallery_views: int = 4
    query_views: int = 4
    seed: int = 0
    photos: tuple[str, ...] = field(default_factory=photo_names)
    # Smallest fraction of the item a view keeps (random_view's min_area; the largest is 0.95).
    min_area: float = 0.55

    def __post_init__(self) -> None:
        if self.gallery_views < 1 or self.query_views < 1 or not self.photos:
            raise ValueError("a folder needs photos and >= 1 gallery and query view per item")


@dataclass(frozen=True)
class EmbeddedFolder:
    """A folder's embeddings, raw as the model outputs them.

    ``items``: item names, ``(I,)``; ``photo``: the photo each item was cut from, ``(I,)``.
    ``gallery`` ``(G, D)`` float32 with ``gallery_item`` ``(G,)`` int64 (index into ``items``),
    item-major; ``queries`` ``(Q, D)`` float32 with ``query_item`` ``(Q,)`` int64, item-major,
    ``query_views`` per item (so views ``2j`` and ``2j+1`` of an item make a two-view set).
    """

    recipe: FolderRecipe
    items: tuple[str, ...]
    photo: tuple[str, ...]
    gallery: npt.NDArray[np.float32]
    gallery_item: npt.NDArray[np.int64]
    queries: npt.NDArray[np.float32]
    query_item: npt.NDArray[np.int64]
    # (Q,) float64: each query input's largest per-channel pixel standard deviation.
    query_input_std: npt.NDArray[np.float64]

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def dim(self) -> int:
        return int(self.gallery.shape[1])


def _view_jpegs(img: Image.Image, rng: random.Random, views: int, min_area: float) -> list[bytes]:
    out = []
    for _ in range(views):
        view = random_view(img, rng, min_area=min_area)
        view.thumbnail((MAX_SIDE, MAX_SIDE))
        buf = io.BytesIO()
        view.save(buf, format="JPEG", quality=JPEG_QUALITY)
        out.append(buf.getvalue())
    return out


def model_inputs(embedder: OnnxEmbedder, blobs: Sequence[bytes]) -> list[npt.NDArray[np.uint8]]:
    """Image files → their ``(3, H, W)`` uint8 model inputs, the service's decode."""
    return [preprocess_bytes(b, embedder.spec) for b in blobs]


def embed_blobs(embedder: OnnxEmbedder, blobs: Sequence[bytes]) -> npt.NDArray[np.float32]:
    """Image files → ``(N, D)`` float32 raw embeddings, through the service's decode."""
    return embed_inputs(embedder, model_inputs(embedder, blobs))


def embed_inputs(
    embedder: OnnxEmbedder, arrays: Sequence[npt.NDArray[np.uint8]]
) -> npt.NDArray[np.float32]:
    """``[(3, H, W)] * N`` uint8 model inputs → ``(N, D)`` float32 raw embeddings."""
    if not arrays:
        return np.zeros((0, embedder.embedding_dim), dtype=np.float32)
    chunks = [
        embedder.embed(stack_batch(arrays[i : i + EMBED_BATCH]))
        for i in range(0, len(arrays), EMBED_BATCH)
    ]
    return np.concatenate(chunks).astype(np.float32, copy=False)


@dataclass(frozen=True)
class FolderFiles:
    """A folder's image files, item-major: ``gallery[i * gallery_views + v]`` is view ``v`` of
    ``items[i]``, likewise ``queries``."""

    items: tuple[str, ...]
    photo: tuple[str, ...]
    gallery: list[bytes]
    queries: list[bytes]


def folder_files(recipe: FolderRecipe) -> FolderFiles:
    """The recipe's JPEG views (seeded: the same recipe gives the same bytes)."""
    regions = {
        (f"{name}-{i}" if recipe.grid != (1, 1) else name, name): region
        for name in recipe.photos
        for i, region in enumerate(photo_regions(load_photo(name), recipe.grid))
    }
    keys = sorted(regions)
    g_rng, q_rng = random.Random(recipe.seed), random.Random(recipe.seed + 1_000_003)
    g_blobs: list[bytes] = []
    q_blobs: list[bytes] = []
    for key in keys:
        g_blobs += _view_jpegs(regions[key], g_rng, recipe.gallery_views, recipe.min_area)
        q_blobs += _view_jpegs(regions[key], q_rng, recipe.query_views, recipe.min_area)
    return FolderFiles(
        items=tuple(k[0] for k in keys),
        photo=tuple(k[1] for k in keys),
        gallery=g_blobs,
        queries=q_blobs,
    )


def build_folder(embedder: OnnxEmbedder, recipe: FolderRecipe) -> EmbeddedFolder:
    files = folder_files(recipe)
    n = len(files.items)
    q_inputs = model_inputs(embedder, files.queries)
    return EmbeddedFolder(
        recipe=recipe,
        items=files.items,
        photo=files.photo,
        gallery=embed_blobs(embedder, files.gallery),
        gallery_item=np.repeat(np.arange(n, dtype=np.int64), recipe.gallery_views),
        queries=embed_inputs(embedder, q_inputs),
        query_item=np.repeat(np.arange(n, dtype=np.int64), recipe.query_views),
        query_input_std=np.array([input_std(x) for x in q_inputs], dtype=np.float64),
    )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def degenerate_images() -> dict[str, bytes]:
    """Queries no enrolled item should match: blank, uniform colour and tiny images, as PNG
    (lossless, so 'uniform' stays uniform), one blank page as JPEG; then noise and a gradient,
    which have content, if little."""
    rng = np.random.default_rng(12)
    out = {
        "black 224": _png(Image.new("RGB", (224, 224), (0, 0, 0))),
        "white 224": _png(Image.new("RGB", (224, 224), (255, 255, 255))),
        "grey 224": _png(Image.new("RGB", (224, 224), (128, 128, 128))),
        "red 224": _png(Image.new("RGB", (224, 224), (200, 30, 30))),
        "blue 640x480": _png(Image.new("RGB", (640, 480), (20, 40, 180))),
        "black 1x1": _png(Image.new("RGB", (1, 1), (0, 0, 0))),
        "white 1x1": _png(Image.new("RGB", (1, 1), (255, 255, 255))),
        "grey 2x2": _png(Image.new("RGB", (2, 2), (90, 90, 90))),
        "grey 140 224": _png(Image.new("RGB", (224, 224), (140, 140, 140))),
        # Near grey: its embedding is neither near a uniform image's nor short (default model).
        "taupe 224": _png(Image.new("RGB", (224, 224), (135, 125, 122))),
        "white jpeg": _jpeg(Image.new("RGB", (640, 480), (250, 250, 250))),
        "noise 4x4": _png(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))),
        "noise 8x8": _png(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))),
        "gradient 224": _png(
            Image.fromarray(np.tile(np.linspace(0, 255, 224, dtype=np.uint8), (224, 1)), "L")
        ),
    }
    return out


def model_digest(embedder: OnnxEmbedder) -> str:
    """The first 16 hex digits of the SHA-256 of the model file and its preprocessing spec."""
    h = hashlib.sha256(embedder.path.read_bytes())
    h.update(repr(embedder.spec).encode())
    return h.hexdigest()[:16]


def cache_file(cache_dir: Path, digest: str, recipe: FolderRecipe) -> Path:
    """Where :func:`cached_folder` keeps one recipe's embeddings for one model."""
    key = hashlib.sha256(repr(recipe).encode()).hexdigest()[:16]
    return cache_dir / f"{recipe.name}-seed{recipe.seed}-{digest}-{key}.npz"


def cached_folder(
    embedder: OnnxEmbedder, recipe: FolderRecipe, cache_dir: Path | None, digest: str = ""
) -> EmbeddedFolder:
    """:func:`build_folder`, read from ``cache_dir`` when this model (``digest``, from
    :func:`model_digest`) embedded this recipe before, else built and written there."""
    if cache_dir is None:
        return build_folder(embedder, recipe)
    path = cache_file(cache_dir, digest or model_digest(embedder), recipe)
    if path.exists():
        with np.load(path) as z:
            return EmbeddedFolder(
                recipe=recipe,
                items=tuple(str(x) for x in z["items"]),
                photo=tuple(str(x) for x in z["photo"]),
                gallery=z["gallery"],
                gallery_item=z["gallery_item"],
                queries=z["queries"],
                query_item=z["query_item"],
                query_input_std=z["query_input_std"],
            )
    folder = build_folder(embedder, recipe)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        items=np.array(folder.items),
        photo=np.array(folder.photo),
        gallery=folder.gallery,
        gallery_item=folder.gallery_item,
        queries=folder.queries,
        query_item=folder.query_item,
        query_input_std=folder.query_input_std,
    )
    tmp.replace(path)  # whole or absent: an interrupted run leaves no half file to read
    return folder
