"""ImageEmbeddings against a brute-force oracle: a dict of ``item -> [(image id, raw row)]``
driven through random adds, removals and replacements (tiny shapes), then every item's rows
compared with the oracle's normalised float64 rows, and the memory count with its formula."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from index.image_embeddings import (
    IMAGE_OVERHEAD_BYTES,
    ITEM_OVERHEAD_BYTES,
    ImageEmbeddings,
    unit_rows,
)

DIM = 6
# float16 keeps 11 significant bits: a unit component is within 2^-11 of the float64 value.
F16_ATOL = 2.0**-11


def check_against(held: ImageEmbeddings, oracle: dict[str, list[tuple[str, np.ndarray]]]) -> None:
    assert sorted(held.item_ids()) == sorted(oracle)
    assert held.image_count == sum(len(v) for v in oracle.values())
    for item_id, images in oracle.items():
        got = held.get(item_id)
        assert got is not None
        assert got.image_ids == tuple(i for i, _ in images)
        assert got.rows.dtype == np.float16 and got.rows.shape == (len(images), DIM)
        want = np.array([row / np.linalg.norm(row) for _, row in images])
        np.testing.assert_allclose(got.rows.astype(np.float64), want, rtol=0, atol=F16_ATOL)
        assert not got.rows.flags.writeable  # readers share it
    ids_bytes = sum(sys.getsizeof(i) for i in oracle)
    images = held.image_count
    expected = images * (2 * DIM + IMAGE_OVERHEAD_BYTES) + len(oracle) * ITEM_OVERHEAD_BYTES
    assert held.memory_bytes() == expected + ids_bytes


def test_random_adds_removals_and_replacements_match_the_oracle() -> None:
    rng = np.random.default_rng(7)
    held = ImageEmbeddings(DIM)
    oracle: dict[str, list[tuple[str, np.ndarray]]] = {}
    next_image = 0
    for step in range(600):
        item_id = f"item-{rng.integers(12)}"
        op = rng.integers(4)
        if op <= 1:  # add 1..3 images, sometimes repeating one the item holds
            n = int(rng.integers(1, 4))
            ids = [f"img-{next_image + j}" for j in range(n)]
            next_image += n
            if oracle.get(item_id) and rng.random() < 0.3:
                ids[0] = oracle[item_id][0][0]  # held already: skipped
            rows = rng.normal(size=(n, DIM))
            added = held.add_images(item_id, ids, rows)
            have = {i for i, _ in oracle.get(item_id, [])}
            new = [(i, r) for i, r in zip(ids, rows, strict=True) if i not in have]
            assert added == len(new)
            if new:
                oracle.setdefault(item_id, []).extend(new)
        elif op == 2 and oracle.get(item_id):  # remove one held image and one unknown id
            victim = oracle[item_id][int(rng.integers(len(oracle[item_id])))][0]
            assert held.remove_images(item_id, [victim, "never"]) == 1
            oracle[item_id] = [(i, r) for i, r in oracle[item_id] if i != victim]
            if not oracle[item_id]:
                del oracle[item_id]
        elif op == 3:  # replace the whole item (a re-read from the store), or remove it
            n = int(rng.integers(0, 3))
            ids = [f"img-{next_image + j}" for j in range(n)]
            next_image += n
            rows = rng.normal(size=(n, DIM))
            held.set_item(item_id, ids, rows)
            if n:
                oracle[item_id] = list(zip(ids, rows, strict=True))
            else:
                oracle.pop(item_id, None)
        if step % 50 == 0:
            check_against(held, oracle)
    check_against(held, oracle)
    for item_id in list(oracle):
        held.remove_item(item_id)
    assert len(held) == 0 and held.memory_bytes() == 0


def test_best_image_by_the_held_rows_is_the_brute_force_one() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(9, DIM))
    held = ImageEmbeddings(DIM)
    held.set_item("a", [f"i{j}" for j in range(9)], raw)
    q = rng.normal(size=DIM)
    q /= np.linalg.norm(q)
    got = held.get("a")
    assert got is not None
    scores = got.rows.astype(np.float32) @ q.astype(np.float32)
    brute = (raw / np.linalg.norm(raw, axis=1, keepdims=True)) @ q
    assert got.image_ids[int(np.argmax(scores))] == f"i{int(np.argmax(brute))}"
    np.testing.assert_allclose(scores, brute, rtol=0, atol=DIM * F16_ATOL)


def test_shapes_are_checked_and_zero_rows_stay_zero() -> None:
    held = ImageEmbeddings(DIM)
    with pytest.raises(ValueError):
        held.add_images("a", ["x"], np.zeros((1, DIM + 1)))
    with pytest.raises(ValueError):
        held.set_item("a", ["x", "y"], np.zeros((1, DIM)))
    assert len(held) == 0
    np.testing.assert_array_equal(unit_rows(np.zeros((1, DIM))), np.zeros((1, DIM)))
