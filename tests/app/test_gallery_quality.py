"""The gallery evaluation without the app, on a real SQLite file and a real Redis: the seeded
sample (reproducible, uniform over the images of multi-image items, single-image items counted),
and ``leave_one_out(store, sample)`` against the from-scratch oracle, with the competing
centroids from the store's states or from a flat index's rows; images deleted after sampling
are skipped and counted."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.gallery_quality import (
    centroid_chunks_from_states,
    compare_models,
    index_centroids,
    leave_one_out,
    sample_gallery,
)
from index.centroid_math import centroid_from_sum
from index.flat_centroid_index import FlatCentroidIndex
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests import redis_server
from tests.index.leave_one_out_oracle import Gallery, oracle_rank
from tests.store.conftest import _drop_namespace

DIM = 16


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    namespace = f"test-{uuid.uuid4().hex}"
    opened: Store = (
        SqliteStore(tmp_path / "store.sqlite3")
        if request.param == "sqlite"
        else RedisStore(redis_server.REDIS_URL, namespace=namespace)
    )
    opened.claim_model_identity(ModelIdentity("gaussian", "1", DIM))
    yield opened
    opened.close()
    if request.param == "redis":
        _drop_namespace(namespace)


def enroll_gaussian(store: Store, items: int, seed: int = 5) -> Gallery:
    """Items of 1..5 noisy images around a centre each; returns what was enrolled."""
    rng = np.random.default_rng(seed)
    gallery: Gallery = {}
    for n in range(items):
        centre = rng.normal(size=DIM)
        rows = [
            (centre + rng.normal(size=DIM)).astype(np.float32)
            for _ in range(int(rng.integers(1, 6)))
        ]
        item_id = f"item-{n:03d}"
        images = [NewImage(hashlib.sha256(r.tobytes()).hexdigest(), r) for r in rows]
        store.enroll(item_id, images)
        gallery[item_id] = rows
    return gallery


def test_leave_one_out_on_the_whole_gallery_is_the_oracle(store: Store) -> None:
    gallery = enroll_gaussian(store, 30)
    sample = sample_gallery(store, 10_000)
    multi = {i: rows for i, rows in gallery.items() if len(rows) > 1}
    assert sample.items == 30
    assert sample.gallery_images == sum(len(r) for r in gallery.values())
    assert sample.single_image_items == 30 - len(multi)
    assert sample.eligible_images == len(sample.images) == sum(len(r) for r in multi.values())
    quality = leave_one_out(store, sample)
    assert quality.skipped_images == 0
    records = {item: store.item_images([item])[item] for item in multi}
    expected = []
    for item_id, image_id in quality.queried:
        position = [r.image_id for r in records[item_id]].index(image_id)
        expected.append(oracle_rank(gallery, item_id, position))
    assert quality.result.ranks.tolist() == expected
    assert quality.result.r_at_1 == pytest.approx(np.mean([r == 1 for r in expected]), abs=1e-12)
    assert quality.result.mrr == pytest.approx(np.mean([1 / r for r in expected]), abs=1e-12)
    assert quality.result.single_image_items == sample.single_image_items
    assert 0 < quality.result.r_at_1 < 1  # neither trivial nor hopeless


def test_the_index_rows_and_the_store_states_give_the_same_ranks(store: Store) -> None:
    enroll_gaussian(store, 25, seed=8)
    index = FlatCentroidIndex(DIM)
    index.rebuild((s.item_id, centroid_from_sum(s.embedding_sum)) for s in store.iter_item_states())
    rows = index_centroids(index)
    assert rows is not None
    sample = sample_gallery(store, 40)
    from_index = leave_one_out(store, sample, rows)
    from_states = leave_one_out(
        store, sample, centroid_chunks_from_states(store.iter_item_states())
    )
    assert from_index.queried == from_states.queried
    assert from_index.result.ranks.tolist() == from_states.result.ranks.tolist()


def test_the_sample_is_seeded_bounded_and_uniform(store: Store) -> None:
    gallery = enroll_gaussian(store, 20, seed=11)
    eligible = sum(len(r) for r in gallery.values() if len(r) > 1)
    first, again = sample_gallery(store, 9, seed=3), sample_gallery(store, 9, seed=3)
    assert first == again
    assert len(first.images) == 9 == len(set(first.images))
    assert first.eligible_images == eligible
    assert {i for i, _ in first.images} <= {i for i, r in gallery.items() if len(r) > 1}
    assert sample_gallery(store, 9, seed=4).images != first.images
    # Every eligible image is drawn at rate 9 / eligible: over 300 seeds, each about
    # 300 * 9 / eligible times (binomial; the bounds are over 5 standard deviations out).
    drawn = Counter(im for seed in range(300) for im in sample_gallery(store, 9, seed=seed).images)
    assert len(drawn) == eligible
    p = 9 / eligible
    mean, sd = 300 * p, (300 * p * (1 - p)) ** 0.5
    assert all(abs(c - mean) < 5 * sd for c in drawn.values()), (mean, sorted(drawn.values()))


def test_an_image_deleted_after_sampling_is_skipped_and_counted(store: Store) -> None:
    gallery = enroll_gaussian(store, 12, seed=2)
    sample = sample_gallery(store, 10_000)
    item_id, image_id = sample.images[0]
    store.delete_image(item_id, image_id)
    quality = leave_one_out(store, sample)
    assert (item_id, image_id) not in quality.queried
    # The item's other images are queried against its state after the delete (or, down to one
    # image, not at all).
    left = len(gallery[item_id]) - 1
    gone = 1 if left > 1 else len(gallery[item_id])
    assert quality.skipped_images == gone
    assert quality.result.queried_images == len(sample.images) - gone


def test_an_empty_gallery_has_no_figure(store: Store) -> None:
    sample = sample_gallery(store, 100)
    quality = leave_one_out(store, sample)
    assert (sample.items, quality.result.queried_images) == (0, 0)
    assert np.isnan(quality.result.r_at_1) and np.isnan(quality.result.mrr)


def test_one_sample_ranks_two_models_side_by_side(tmp_path: Path) -> None:
    # A migration's shadow store holds the primary's item and image ids with the new model's
    # embeddings: one sample drawn from the primary is queried in both.
    primary = SqliteStore(tmp_path / "primary.sqlite3")
    shadow = SqliteStore(tmp_path / "shadow.sqlite3")
    primary.claim_model_identity(ModelIdentity("old", "1", DIM))
    shadow.claim_model_identity(ModelIdentity("new", "2", DIM))
    rng = np.random.default_rng(21)
    old: Gallery = {}
    new: Gallery = {}
    try:
        for n in range(25):
            centre = rng.normal(size=DIM)
            item_id = f"item-{n:02d}"
            # The new model's views of the same photos sit closer to their item's centre.
            noise = rng.normal(size=(int(rng.integers(2, 5)), DIM))
            old[item_id] = [(centre + 1.3 * e).astype(np.float32) for e in noise]
            new[item_id] = [(centre + 0.6 * e).astype(np.float32) for e in noise]
            hashes = [hashlib.sha256(r.tobytes()).hexdigest() for r in old[item_id]]
            outcome = primary.enroll(
                item_id, [NewImage(h, r) for h, r in zip(hashes, old[item_id], strict=True)]
            )
            shadow.enroll(
                item_id,
                [NewImage(h, r) for h, r in zip(hashes, new[item_id], strict=True)],
                image_ids=outcome.image_ids,
            )
        sample = sample_gallery(primary, 30, seed=1)
        before, after = leave_one_out(primary, sample), leave_one_out(shadow, sample)
        assert before.queried == after.queried and len(before.queried) == 30
        for gallery, quality, store in ((old, before, primary), (new, after, shadow)):
            records = store.item_images(list(gallery))
            expected = [
                oracle_rank(gallery, i, [r.image_id for r in records[i]].index(im))
                for i, im in quality.queried
            ]
            assert quality.result.ranks.tolist() == expected
        assert after.result.mrr > before.result.mrr
        # What the migrate command prints and checks, from the same sample.
        comparison = compare_models(primary, shadow, 30, seed=1)
        assert comparison.current.queried == before.queried
        assert comparison.candidate.result.ranks.tolist() == after.result.ranks.tolist()
        gain = after.result.r_at_1 - before.result.r_at_1
        assert comparison.r_at_1_change == pytest.approx(gain)
        assert not comparison.worse_by_more_than(0.0)
        reverse = compare_models(shadow, primary, 30, seed=1)
        assert reverse.worse_by_more_than(gain - 0.01) and not reverse.worse_by_more_than(gain)
        text = "\n".join(comparison.lines("old v1", "new v2"))
        assert "30 sampled images" in text and f"{before.result.r_at_1:.4f}" in text
    finally:
        primary.close()
        shadow.close()
