"""The re-embedding job keeps the primary's quarantine flags (real SQLite stores, the tiny
models, real photos): the shadow's items hold out the same images, so their sums and counts
are those of the new model's embeddings of the counted images; a flag changed on the primary
is copied by the next pass."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from app.model_migration import embed_originals
from app.reembed_job import ReembedJob
from artifact.image_decode import preprocess_bytes
from store.kept_quarantine import KeptQuarantine
from store.records import EnrollOutcome, NewImage
from store.store import Store
from tests.app.test_reembed_job import NEW_SEED, Stores
from tests.tiny_artifact import reference_embeddings, tiny_spec, write_tiny_artifact


@pytest.fixture
def migration(tmp_path: Path, tiny_model_path: Path) -> Stores:
    """``test_reembed_job``'s set-up: a primary of the tiny model, a shadow of another seed."""
    new = write_tiny_artifact(tmp_path / "new-model", tiny_spec("2"), NEW_SEED)
    return Stores(tmp_path, tiny_model_path, new)


def enroll_primary(
    stores: Stores, item: str, views: Sequence[bytes], quarantine: Sequence[int]
) -> EnrollOutcome:
    hashes = [hashlib.sha256(v).hexdigest() for v in views]
    for h, v in zip(hashes, views, strict=True):
        stores.blobs.put(h, v)
    batch = np.stack([preprocess_bytes(v, stores.old.spec) for v in views])
    images = [NewImage(h, e) for h, e in zip(hashes, stores.old.embed(batch), strict=True)]
    return stores.primary.enroll(item, images, judge=KeptQuarantine(frozenset(quarantine)))


def image_ids(store: Store, item: str) -> list[str]:
    record = store.get_item(item)
    assert record is not None
    return record.image_ids


def job(stores: Stores) -> ReembedJob:
    return ReembedJob(
        primary=stores.primary,
        shadow=stores.shadow,
        blobs=stores.blobs,
        embed=embed_originals(stores.new, 10**8),
    )


def assert_shadow_holds_the_primarys_flags(stores: Stores, item: str) -> None:
    want, got = stores.primary.get_item(item), stores.shadow.get_item(item)
    assert want is not None and got is not None
    assert got.quarantined_image_ids == want.quarantined_image_ids
    assert got == want
    images = stores.shadow.item_images([item])[item]
    originals = [stores.blobs.get(i.content_hash) for i in images]
    spec = tiny_spec("2")
    batch = np.stack([preprocess_bytes(d, spec) for d in originals if d is not None])
    expected = reference_embeddings(batch, seed=NEW_SEED)  # the new model, every image kept
    np.testing.assert_allclose(np.stack([i.embedding for i in images]), expected, atol=1e-4)
    counted = [n for n, i in enumerate(images) if not i.quarantined]
    state, primary_state = stores.shadow.get_item_state(item), stores.primary.get_item_state(item)
    assert state is not None and primary_state is not None
    assert state.count == primary_state.count == len(counted)
    np.testing.assert_allclose(state.embedding_sum, expected[counted].sum(axis=0), atol=1e-3)
    if len(counted) < len(images):  # the sum would differ with the held-out images in it
        assert not np.allclose(state.embedding_sum, expected.sum(axis=0), atol=1e-3)


def test_the_shadow_holds_out_the_images_the_primary_holds_out(
    migration: Stores, photo_views: dict[str, list[bytes]]
) -> None:
    stores = migration
    # coffee: a stray view of chelsea, quarantined at enrollment; rocket: its first view
    # quarantined afterwards (ahead of the counted ones); camera: none.
    coffee = enroll_primary(
        stores, "coffee", [*photo_views["coffee"][:3], photo_views["chelsea"][4]], [3]
    )
    rocket = enroll_primary(stores, "rocket", photo_views["rocket"][:3], [])
    stores.primary.set_image_quarantine("rocket", rocket.image_ids[0], True)
    enroll_primary(stores, "camera", photo_views["camera"][:2], [])
    report = job(stores).run()
    assert report.in_step and report.items_copied == 3
    record = stores.shadow.get_item("coffee")
    assert record is not None and record.quarantined_image_ids == [coffee.image_ids[3]]
    for item in ("coffee", "rocket", "camera"):
        assert_shadow_holds_the_primarys_flags(stores, item)

    # Flags changed on the primary only (no mirror here): the next pass copies them.
    stores.primary.set_image_quarantine("coffee", coffee.image_ids[3], False)
    stores.primary.set_image_quarantine("camera", image_ids(stores.primary, "camera")[1], True)
    again = job(stores).run()
    assert again.in_step and again.items_copied == 2 and again.items_in_step == 1
    for item in ("coffee", "rocket", "camera"):
        assert_shadow_holds_the_primarys_flags(stores, item)
