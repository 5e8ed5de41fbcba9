"""The re-embedding job against writes that race it, in-process on real SQLite stores and the
tiny models: a write to the primary while an item is copied, and a service's copy of a write
landing in the shadow between the job's delete and its enrollment, both end with the shadow
equal to a fresh re-embed of the primary (same ids, same order, the new model's arithmetic)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.model_migration import embed_originals
from app.reembed_job import ReembedJob
from app.retriever import model_identity
from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from store.directory_blob_store import DirectoryBlobStore
from store.records import EnrollOutcome, NewImage
from store.sqlite_store import SqliteStore
from tests.migration_oracle import assert_shadow_is_a_fresh_reembed
from tests.tiny_artifact import tiny_spec, write_tiny_artifact

NEW_SEED = 7


class Stores:
    def __init__(self, tmp_path: Path, old_model: Path, new_model: Path) -> None:
        self.old = OnnxEmbedder(old_model, allow_gpu=False)
        self.new = OnnxEmbedder(new_model, allow_gpu=False)
        self.primary = SqliteStore(tmp_path / "store.sqlite3")
        self.shadow = SqliteStore(tmp_path / "store.v2.sqlite3")
        self.blobs = DirectoryBlobStore(tmp_path / "blobs")
        self.primary.claim_model_identity(model_identity(self.old))
        self.shadow.claim_model_identity(model_identity(self.new))

    def enroll(
        self,
        store: SqliteStore,
        embedder: OnnxEmbedder,
        item: str,
        views: Sequence[bytes],
        image_ids: Sequence[str] | None = None,
    ) -> EnrollOutcome:
        hashes = [hashlib.sha256(v).hexdigest() for v in views]
        for h, v in zip(hashes, views, strict=True):
            self.blobs.put(h, v)
        batch = np.stack([preprocess_bytes(v, embedder.spec) for v in views])
        images = [NewImage(h, e) for h, e in zip(hashes, embedder.embed(batch), strict=True)]
        return store.enroll(item, images, image_ids=image_ids)

    def check(self) -> int:
        return assert_shadow_is_a_fresh_reembed(
            self.primary, self.shadow, self.blobs, tiny_spec("2"), NEW_SEED
        )


@pytest.fixture
def stores(tmp_path: Path, tiny_model_path: Path) -> Stores:
    new = write_tiny_artifact(tmp_path / "new-model", tiny_spec("2"), NEW_SEED)
    return Stores(tmp_path, tiny_model_path, new)


def test_a_write_to_the_primary_during_a_copy_makes_the_job_copy_the_item_again(
    stores: Stores, photo_views: dict[str, list[bytes]]
) -> None:
    views = photo_views["coffee"]
    stores.enroll(stores.primary, stores.old, "coffee", views[:2])
    embed = embed_originals(stores.new, 10**8)
    calls: list[int] = []

    def racing_embed(originals: Sequence[bytes]) -> Any:
        calls.append(len(originals))
        if len(calls) == 1:  # a service enrolls one more image while the job embeds
            stores.enroll(stores.primary, stores.old, "coffee", views[2:3])
        return embed(originals)

    report = ReembedJob(
        primary=stores.primary, shadow=stores.shadow, blobs=stores.blobs, embed=racing_embed
    ).run()
    assert calls == [2, 3]
    assert report.items_copied == 1 and report.in_step
    assert stores.check() == 1


def test_a_copy_landing_in_the_shadow_mid_copy_does_not_reorder_the_item(
    stores: Stores, photo_views: dict[str, list[bytes]]
) -> None:
    views = photo_views["rocket"]
    outcome = stores.enroll(stores.primary, stores.old, "rocket", views[:3])
    shadow_enroll = stores.shadow.enroll
    raced: list[bool] = []

    def enroll_after_a_copy(*args: Any, **kwargs: Any) -> EnrollOutcome:
        if not raced:  # between the job's delete and its enrollment: the service's copy
            raced.append(True)
            stores.enroll(stores.shadow, stores.new, "rocket", views[2:3], outcome.image_ids[2:])
        return shadow_enroll(*args, **kwargs)

    stores.shadow.enroll = enroll_after_a_copy  # type: ignore[method-assign]
    report = ReembedJob(
        primary=stores.primary,
        shadow=stores.shadow,
        blobs=stores.blobs,
        embed=embed_originals(stores.new, 10**8),
    ).run()
    assert raced and report.in_step
    assert stores.check() == 1  # image order (and so the sums' order) as the primary's
