"""A gallery with quarantined images, for the tests of what reads the store's images: real
photo views embedded by the tiny artifact, enrolled into a real SQLite store, their originals
in a real blob directory; images are quarantined by the enrollment's judge, as the service's
quality gate does."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from app.retriever import model_identity
from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from store.directory_blob_store import DirectoryBlobStore
from store.kept_quarantine import KeptQuarantine
from store.records import EnrollOutcome, ImageRecord, NewImage
from store.sqlite_store import SqliteStore


class QuarantineGallery:
    def __init__(self, directory: Path, model_path: Path, name: str = "store") -> None:
        self.embedder = OnnxEmbedder(model_path, allow_gpu=False)
        self.dim = self.embedder.embedding_dim
        self.store = SqliteStore(directory / f"{name}.sqlite3")
        self.blobs = DirectoryBlobStore(directory / "blobs")
        self.store.claim_model_identity(model_identity(self.embedder))
        self.originals: dict[str, bytes] = {}  # image id -> the bytes enrolled

    def enroll(
        self, item_id: str, views: Sequence[bytes], quarantine: Sequence[int] = ()
    ) -> EnrollOutcome:
        """``views`` as one enrollment; the request positions ``quarantine`` held out."""
        hashes = [hashlib.sha256(v).hexdigest() for v in views]
        for h, v in zip(hashes, views, strict=True):
            self.blobs.put(h, v)
        batch = np.stack([preprocess_bytes(v, self.embedder.spec) for v in views])
        images = [NewImage(h, e) for h, e in zip(hashes, self.embedder.embed(batch), strict=True)]
        outcome = self.store.enroll(item_id, images, judge=KeptQuarantine(frozenset(quarantine)))
        self.originals.update(zip(outcome.image_ids, views, strict=True))
        return outcome

    def counted(self, item_id: str) -> list[ImageRecord]:
        return [r for r in self.store.item_images([item_id])[item_id] if not r.quarantined]

    def quarantined_ids(self) -> set[str]:
        return {r.image_id for r in self.store.iter_images() if r.quarantined}

    def close(self) -> None:
        self.store.close()


def stray_gallery(
    gallery: QuarantineGallery, photo_views: dict[str, list[bytes]], names: Sequence[str]
) -> dict[str, str]:
    """Each of ``names`` enrolled with 3 of its views, and with a view of the next name's
    photo (a mislabel) that the judge quarantines; returns item -> its quarantined image id.
    The stray is enrolled in the same request, after the item's own views."""
    strays: dict[str, str] = {}
    for n, name in enumerate(names):
        other = names[(n + 1) % len(names)]
        outcome = gallery.enroll(name, [*photo_views[name][:3], photo_views[other][4]], [3])
        strays[name] = outcome.image_ids[3]
    return strays


@contextmanager
def opened_stray_gallery(
    directory: Path, model_path: Path, photo_views: dict[str, list[bytes]], names: Sequence[str]
) -> Iterator[tuple[QuarantineGallery, dict[str, str]]]:
    """A ``stray_gallery`` of ``names`` in a new ``QuarantineGallery``, closed afterwards."""
    gallery = QuarantineGallery(directory, model_path)
    try:
        yield gallery, stray_gallery(gallery, photo_views, names)
    finally:
        gallery.close()
