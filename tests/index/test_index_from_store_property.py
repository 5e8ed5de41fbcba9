"""Property: an index fed from store outcomes equals a from-scratch numpy recomputation.

Random enroll / delete-image / delete-item sequences run against a real store; after each one
the index is updated from the returned ``ItemState`` (as the service does). At the end every
centroid must equal the normalised mean of the item's remaining embeddings, and search must
equal a brute-force ranking with ties by item id. Embeddings come from a few small-integer
vectors, so different items often hold identical centroids: exact ties.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.centroid_math import centroid_from_sum, l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from store.records import ItemState, ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests.redis_server import REDIS_URL
from tests.store.conftest import _drop_namespace

DIM = 6
BASES = np.array(
    [[1, 0, 0, 2, 0, 1], [0, 3, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [-2, 0, 1, 0, 3, 0]],
    dtype=np.float32,
)
ITEMS = ["a", "b", "c", "d", "e"]

# (content choice, variant): the same pair always means the same bytes, hence embedding.
image_choice = st.tuples(st.integers(0, len(BASES) - 1), st.integers(0, 1))
operation = st.one_of(
    st.tuples(
        st.just("enroll"), st.sampled_from(ITEMS), st.lists(image_choice, min_size=1, max_size=3)
    ),
    st.tuples(st.just("delete_image"), st.sampled_from(ITEMS), st.integers(0, 5)),
    st.tuples(st.just("delete_item"), st.sampled_from(ITEMS), st.just(0)),
)


def new_image(choice: tuple[int, int]) -> NewImage:
    base, variant = choice
    return NewImage(f"{base:031x}{variant:033x}", BASES[base] * (variant + 1))


def ranking(rows: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[tuple[str, float]]:
    scored = [
        (i, float(np.dot(r.astype(np.float64), q.astype(np.float64)))) for i, r in rows.items()
    ]
    scored.sort(key=lambda p: (-p[1], p[0]))
    return scored[:k]


def run(store: Store, ops: list[tuple[str, str, object]]) -> None:
    store.claim_model_identity(ModelIdentity("m", "1", DIM))
    index = FlatCentroidIndex(DIM)
    model: dict[str, list[tuple[str, str, np.ndarray]]] = {}  # item -> [(image id, hash, emb)]

    def apply(state: ItemState) -> None:
        if state.count == 0:
            index.remove(state.item_id)
        else:
            index.upsert(state.item_id, centroid_from_sum(state.embedding_sum))

    for op, item, arg in ops:
        if op == "enroll":
            images = [new_image(c) for c in arg]  # type: ignore[attr-defined]
            out = store.enroll(item, images)
            held = model.setdefault(item, [])
            for img, image_id, created in zip(images, out.image_ids, out.created, strict=True):
                if created:
                    held.append((image_id, img.content_hash, img.embedding))
            apply(out.item)
        elif op == "delete_image" and item in model:
            image_id = model[item][int(arg) % len(model[item])][0]  # type: ignore[call-overload]
            apply(store.delete_image(item, image_id).item)
            model[item] = [x for x in model[item] if x[0] != image_id]
            if not model[item]:
                del model[item]
        elif op == "delete_item" and item in model:
            apply(store.delete_item(item).item)
            del model[item]

    expected = {
        item: l2_normalize(np.mean([e.astype(np.float64) for _, _, e in held], axis=0))
        for item, held in model.items()
    }
    assert sorted(index.item_ids()) == sorted(expected)
    for item, centroid in expected.items():
        np.testing.assert_allclose(index.get(item), centroid, rtol=0, atol=1e-5)
    stored = {i: index.get(i) for i in index.item_ids()}
    queries = l2_normalize(np.vstack([BASES, np.ones((1, DIM)), -BASES[:1]]))
    for k in (1, 2, 3, 5):
        for q, got in zip(queries, index.search(queries, k), strict=True):
            want = ranking(stored, q, k)  # type: ignore[arg-type]
            assert [i for i, _ in got] == [i for i, _ in want]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-9)
            from_scratch = ranking(expected, q, k)
            np.testing.assert_allclose(
                [s for _, s in got], [s for _, s in from_scratch], rtol=0, atol=1e-5
            )


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_index_matches_brute_force_after_random_store_operations(
    backend: str, ops: list[tuple[str, str, object]]
) -> None:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            store: Store = SqliteStore(Path(tmp) / "s.sqlite3")
            try:
                run(store, ops)
            finally:
                store.close()
    else:
        namespace = f"test-{uuid.uuid4().hex}"
        store = RedisStore(REDIS_URL, namespace=namespace)
        try:
            run(store, ops)
        finally:
            store.close()
            _drop_namespace(namespace)
