"""``Store.item_images``: several items' images in one round trip, alike on SQLite and Redis."""

from __future__ import annotations

import hashlib

import numpy as np

from store.records import ModelIdentity, NewImage
from store.store import Store

DIM = 8
IDENTITY = ModelIdentity(name="test-model", version="1", dim=DIM)


def image(tag: str) -> NewImage:
    rng = np.random.default_rng(int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16))
    return NewImage(hashlib.sha256(tag.encode()).hexdigest(), rng.normal(size=DIM).astype("f4"))


def test_item_images_returns_each_items_images_in_enrollment_order(store: Store) -> None:
    store.claim_model_identity(IDENTITY)
    a = store.enroll("a", [image("a1"), image("a2")])
    b = store.enroll("b", [image("b1")])
    a3 = store.enroll("a", [image("a3"), image("a1")])  # a1 again: not a new image
    store.delete_image("a", a.image_ids[1])
    wanted = {
        "a": [(a.image_ids[0], image("a1")), (a3.image_ids[0], image("a3"))],
        "b": [(b.image_ids[0], image("b1"))],
    }
    # Asked in any order, with an unknown item and a repeat: each item once, unknown -> [].
    got = store.item_images(["b", "nope", "a", "b"])
    assert set(got) == {"a", "b", "nope"}
    assert got["nope"] == []
    for item_id, expected in wanted.items():
        records = got[item_id]
        assert [(r.image_id, r.item_id, r.content_hash) for r in records] == [
            (i, item_id, img.content_hash) for i, img in expected
        ]
        for r, (_, img) in zip(records, expected, strict=True):
            assert r.embedding.dtype == np.float32
            np.testing.assert_array_equal(r.embedding, img.embedding)
    # The same images iter_images streams, item by item.
    streamed: dict[str, list[str]] = {}
    for r in store.iter_images():
        streamed.setdefault(r.item_id, []).append(r.image_id)
    assert {i: [r.image_id for r in rs] for i, rs in got.items() if rs} == streamed
    assert store.item_images([]) == {}
    store.delete_item("a")
    assert store.item_images(["a"]) == {"a": []}
