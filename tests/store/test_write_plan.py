"""The write plan without a store: explicit expected plans, and random writes against an oracle.

The property test applies every plan to ``MemoryStore``, a third backend written here that
checks each mutation's precondition (e.g. ``DeleteItem`` names exactly the images left), and
compares outcomes and state with a brute-force model that keeps each item's images in a list.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import assert_never

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import ImageNotFoundError, ItemNotFoundError
from store.mutations import (
    CreateItem,
    DeleteItem,
    Mutation,
    PutImage,
    ReleaseHash,
    RemoveImage,
    SetItemTotals,
)
from store.records import DeleteOutcome, EnrollOutcome, NewImage
from store.write_plan import (
    HeldImage,
    ItemTotals,
    hashes_to_look_up,
    plan_delete_image,
    plan_delete_item,
    plan_enroll,
)


def ids(prefix: str = "new") -> Callable[[], str]:
    """A deterministic stand-in for uuid4: ``new0``, ``new1``, ..."""
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter)}"


def no_ids() -> str:
    raise AssertionError("the plan drew a new image id although it writes no image")


def img(content_hash: str, *values: float) -> NewImage:
    return NewImage(content_hash, np.array(values, dtype=np.float32))


def totals(count: int, *values: float) -> ItemTotals:
    return ItemTotals(count, np.array(values, dtype=np.float64))


def held(image_id: str, content_hash: str, *values: float) -> HeldImage:
    return HeldImage(image_id, content_hash, np.array(values, dtype=np.float32))


def plain(mutations: Sequence[Mutation]) -> list[tuple[object, ...]]:
    """Mutations as comparable tuples: (kind, field values...), arrays as (dtype, values)."""
    out = []
    for m in mutations:
        values = [getattr(m, f.name) for f in fields(m)]
        out.append(
            (
                type(m).__name__,
                *((v.dtype.name, v.tolist()) if isinstance(v, np.ndarray) else v for v in values),
            )
        )
    return out


# -- enroll: explicit plans ---------------------------------------------------------------------


def test_enrolling_a_new_item_creates_it_puts_images_then_sets_totals() -> None:
    plan = plan_enroll(
        "cat",
        [img("a", 1, 2), img("b", 0.5, -4)],
        stored=None,
        known={},
        claimed_dim=2,
        new_id=ids(),
    )
    assert plain(plan.mutations) == [
        ("CreateItem", "cat", 2),
        ("PutImage", "cat", "new0", "a", ("float32", [1.0, 2.0])),
        ("PutImage", "cat", "new1", "b", ("float32", [0.5, -4.0])),
        ("SetItemTotals", "cat", 2, ("float64", [1.5, -2.0])),
    ]
    out = plan.outcome
    assert out.image_ids == ["new0", "new1"] and out.created == [True, True]
    assert out.item.item_id == "cat" and out.item.count == 2
    assert out.item.embedding_sum.dtype == np.float64
    assert out.item.embedding_sum.tolist() == [1.5, -2.0]


def test_duplicates_within_the_call_and_against_the_item_reuse_ids() -> None:
    stored = totals(1, 1, 1)
    before = stored.embedding_sum.copy()
    images = [img("a", 9, 9), img("b", 2, 0), img("b", 2, 0), img("a", 9, 9), img("c", 0, 3)]
    plan = plan_enroll(
        "cat", images, stored=stored, known={"a": "old-a"}, claimed_dim=None, new_id=ids()
    )
    assert plan.outcome.image_ids == ["old-a", "new0", "new0", "old-a", "new1"]
    assert plan.outcome.created == [False, True, False, False, True]
    assert plain(plan.mutations) == [
        ("PutImage", "cat", "new0", "b", ("float32", [2.0, 0.0])),
        ("PutImage", "cat", "new1", "c", ("float32", [0.0, 3.0])),
        ("SetItemTotals", "cat", 3, ("float64", [3.0, 4.0])),
    ]
    assert plan.outcome.item.count == 3 and plan.outcome.item.embedding_sum.tolist() == [3, 4]
    np.testing.assert_array_equal(stored.embedding_sum, before)  # the read state is not mutated


def test_an_enrollment_of_held_images_only_writes_nothing() -> None:
    stored = totals(2, 3, -1)
    plan = plan_enroll(
        "cat",
        [img("b", 5, 5), img("a", 7, 7), img("b", 5, 5)],
        stored=stored,
        known={"a": "id-a", "b": "id-b"},
        claimed_dim=2,
        new_id=no_ids,
    )
    assert plan.mutations == ()
    assert plan.outcome.image_ids == ["id-b", "id-a", "id-b"]
    assert plan.outcome.created == [False, False, False]
    assert plan.outcome.item.count == 2 and plan.outcome.item.embedding_sum.tolist() == [3, -1]


def test_the_sum_is_added_in_input_order_onto_the_stored_sum() -> None:
    # In float64, (1e16 + 1) + 1 == 1e16 but 1e16 + (1 + 1) == 1e16 + 2: the order is the rule.
    plan = plan_enroll(
        "cat",
        [img("a", 1), img("b", 1)],
        stored=totals(1, 1e16),
        known={},
        claimed_dim=None,
        new_id=ids(),
    )
    assert plan.outcome.item.embedding_sum.tolist() == [1e16]
    assert plain(plan.mutations)[-1] == ("SetItemTotals", "cat", 3, ("float64", [1e16]))


@pytest.mark.parametrize(
    ("claimed", "stored_dim", "dims", "accepted"),
    [
        (3, None, [3, 3], True),
        (3, None, [2], False),  # the claimed dim rules a new item
        (2, 2, [2, 2], True),
        (2, 2, [3], False),  # ... and an existing one
        (None, 2, [2, 2], True),
        (None, 2, [3], False),  # unclaimed: the item's dim
        (None, None, [4, 4], True),
        (None, None, [4, 4, 3], False),  # new and unclaimed: the first image's dim
    ],
)
def test_the_dim_rule(
    claimed: int | None, stored_dim: int | None, dims: list[int], accepted: bool
) -> None:
    images = [NewImage(f"h{i}", np.ones(d, np.float32)) for i, d in enumerate(dims)]
    stored = None if stored_dim is None else ItemTotals(1, np.zeros(stored_dim))
    if not accepted:
        with pytest.raises(ValueError, match="embedding must be"):
            plan_enroll("cat", images, stored=stored, known={}, claimed_dim=claimed, new_id=no_ids)
        return
    plan = plan_enroll("cat", images, stored=stored, known={}, claimed_dim=claimed, new_id=ids())
    assert plan.outcome.item.embedding_sum.shape == (dims[0],)
    if stored is None:
        assert plan.mutations[0] == CreateItem("cat", dims[0])


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(
    "bad",
    [
        np.full(2, np.nan, np.float32),
        np.array([1.0, np.inf], np.float32),
        np.array([1.0, 1e39]),  # finite in float64, infinite as float32
        np.ones((1, 2), np.float32),  # (1, D), not (D,)
    ],
    ids=["nan", "inf", "float32-overflow", "2-d"],
)
def test_one_bad_embedding_anywhere_plans_nothing(bad: npt.NDArray[np.floating]) -> None:
    images = [img("a", 1, 1), img("b", 2, 2), NewImage("bad", bad)]
    with pytest.raises(ValueError):
        plan_enroll("cat", images, stored=None, known={}, claimed_dim=None, new_id=no_ids)


def test_an_empty_enrollment_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        plan_enroll("cat", [], stored=totals(1, 0), known={}, claimed_dim=1, new_id=no_ids)


def test_hashes_to_look_up_are_the_distinct_ones_in_first_seen_order() -> None:
    images = [img(h, 0) for h in ("b", "a", "b", "c", "a")]
    assert hashes_to_look_up(images) == ["b", "a", "c"]


# -- deletes: explicit plans --------------------------------------------------------------------


def test_delete_image_recomputes_the_sum_from_the_rest_in_order() -> None:
    # 1e20 + 1 == 1e20 in float64: subtracting 1e20 from the stored sum would leave 0, not 1.
    item = [
        held("i-big", "big", 1e20, 1e20),
        held("i-one", "one", 1, 2),
        held("i-two", "two", 1, 0),
    ]
    plan = plan_delete_image(
        "cat",
        "i-big",
        stored=totals(3, 1e20, 1e20),
        held=item,
        refs={"big": 2, "one": 1, "two": 1},
    )
    assert plain(plan.mutations) == [
        ("RemoveImage", "cat", "i-big", "big"),
        ("SetItemTotals", "cat", 2, ("float64", [2.0, 2.0])),
    ]
    assert plan.outcome.item.count == 2 and plan.outcome.item.embedding_sum.tolist() == [2, 2]
    assert plan.outcome.released_hashes == []  # another item still holds "big"


def test_deleting_the_last_image_deletes_the_item_and_releases_its_hash() -> None:
    plan = plan_delete_image(
        "cat", "i-a", stored=totals(1, 4, 5, 6), held=[held("i-a", "a", 4, 5, 6)], refs={"a": 1}
    )
    assert plain(plan.mutations) == [
        ("RemoveImage", "cat", "i-a", "a"),
        ("DeleteItem", "cat", ()),
        ("ReleaseHash", "a"),
    ]
    assert plan.outcome.released_hashes == ["a"]
    gone = plan.outcome.item
    assert gone.item_id == "cat" and gone.count == 0
    assert gone.embedding_sum.dtype == np.float64 and gone.embedding_sum.tolist() == [0, 0, 0]


def test_delete_image_errors() -> None:
    with pytest.raises(ItemNotFoundError, match="nobody"):
        plan_delete_image("nobody", "i-a", stored=None, held=[], refs={})
    with pytest.raises(ImageNotFoundError, match="i-zzz"):
        plan_delete_image(
            "cat", "i-zzz", stored=totals(1, 1), held=[held("i-a", "a", 1)], refs={"a": 1}
        )


def test_delete_item_drops_every_image_and_releases_only_unshared_hashes() -> None:
    plan = plan_delete_item(
        "cat",
        stored=totals(3, 1, 1),
        held_hashes=["own-2", "shared", "own-1"],
        refs={"own-2": 1, "shared": 3, "own-1": 1},
    )
    assert plain(plan.mutations) == [
        ("DeleteItem", "cat", ("own-2", "shared", "own-1")),
        ("ReleaseHash", "own-2"),
        ("ReleaseHash", "own-1"),
    ]
    assert plan.outcome.released_hashes == ["own-2", "own-1"]
    assert plan.outcome.item.count == 0 and plan.outcome.item.embedding_sum.tolist() == [0, 0]
    with pytest.raises(ItemNotFoundError):
        plan_delete_item("nobody", stored=None, held_hashes=[], refs={})


# -- random writes: plans applied to a checking in-memory store, against an oracle -------------


@dataclass
class MemoryItem:
    count: int
    embedding_sum: npt.NDArray[np.float64]
    images: dict[str, tuple[str, npt.NDArray[np.float32]]] = field(default_factory=dict)


class MemoryStore:
    """Reads plan inputs and applies mutations, asserting each one's precondition."""

    def __init__(self, claimed_dim: int) -> None:
        self.claimed_dim = claimed_dim
        self.items: dict[str, MemoryItem] = {}
        self.refs: Counter[str] = Counter()
        self.used_ids: set[str] = set()
        self.new_id = ids("img")

    def totals(self, item_id: str) -> ItemTotals | None:
        item = self.items.get(item_id)
        return None if item is None else ItemTotals(item.count, item.embedding_sum.copy())

    def held(self, item_id: str) -> list[HeldImage]:
        item = self.items.get(item_id)
        images = {} if item is None else item.images
        return [HeldImage(i, h, e) for i, (h, e) in images.items()]

    def enroll(self, item_id: str, images: list[NewImage]) -> EnrollOutcome:
        wanted = set(hashes_to_look_up(images))
        known = {h.content_hash: h.image_id for h in self.held(item_id) if h.content_hash in wanted}
        plan = plan_enroll(
            item_id,
            images,
            stored=self.totals(item_id),
            known=known,
            claimed_dim=self.claimed_dim,
            new_id=self.new_id,
        )
        self.apply(plan.mutations)
        return plan.outcome

    def delete_image(self, item_id: str, image_id: str) -> DeleteOutcome:
        plan = plan_delete_image(
            item_id,
            image_id,
            stored=self.totals(item_id),
            held=self.held(item_id),
            refs=dict(self.refs),
        )
        self.apply(plan.mutations)
        assert [m.content_hash for m in plan.mutations if isinstance(m, ReleaseHash)] == (
            plan.outcome.released_hashes
        )
        return plan.outcome

    def delete_item(self, item_id: str) -> DeleteOutcome:
        plan = plan_delete_item(
            item_id,
            stored=self.totals(item_id),
            held_hashes=[h.content_hash for h in self.held(item_id)],
            refs=dict(self.refs),
        )
        self.apply(plan.mutations)
        return plan.outcome

    def apply(self, mutations: Sequence[Mutation]) -> None:
        for m in mutations:
            match m:
                case CreateItem():
                    assert m.item_id not in self.items
                    self.items[m.item_id] = MemoryItem(0, np.zeros(m.dim))
                case PutImage():
                    item = self.items[m.item_id]
                    assert m.content_hash not in {h for h, _ in item.images.values()}
                    assert m.image_id not in self.used_ids
                    assert m.embedding.dtype == np.float32
                    self.used_ids.add(m.image_id)
                    item.images[m.image_id] = (m.content_hash, m.embedding)
                    self.refs[m.content_hash] += 1
                case SetItemTotals():
                    item = self.items[m.item_id]
                    assert m.count == len(item.images) >= 1
                    assert m.embedding_sum.dtype == np.float64
                    item.count, item.embedding_sum = m.count, m.embedding_sum
                case RemoveImage():
                    content_hash, _ = self.items[m.item_id].images.pop(m.image_id)
                    assert content_hash == m.content_hash
                    self.refs[content_hash] -= 1
                case DeleteItem():
                    item = self.items.pop(m.item_id)
                    assert tuple(h for h, _ in item.images.values()) == m.content_hashes
                    self.refs.subtract(m.content_hashes)
                case ReleaseHash():
                    assert self.refs[m.content_hash] == 0
                    del self.refs[m.content_hash]
                case _:
                    assert_never(m)
        assert all(n > 0 for n in self.refs.values()), "a hash dropped to 0 was not released"


DIM = 3
ITEMS = ["a", "b", "c"]
# A few distinct byte strings (hashes) shared across items, each with its own float32 vector of
# mixed magnitudes, so the float64 sum's rounding depends on the order of additions.
CONTENT = {
    f"h{i}": np.array(v, dtype=np.float32)
    for i, v in enumerate(
        [[1e8, 1, -3], [0.1, 2.5e-8, 7], [-1e8, 3.3, 1e-30], [1, 1, 1], [6e7, -0.7, 0.25]]
    )
}

operation = st.one_of(
    st.tuples(
        st.just("enroll"),
        st.sampled_from(ITEMS),
        st.lists(st.sampled_from(list(CONTENT)), min_size=1, max_size=4),
    ),
    st.tuples(st.just("delete_image"), st.sampled_from(ITEMS), st.integers(0, 7)),
    st.tuples(st.just("delete_item"), st.sampled_from(ITEMS), st.just(0)),
    st.tuples(st.just("delete_missing"), st.sampled_from(ITEMS), st.just(0)),
)


def in_order_sum(hashes: list[str]) -> list[float]:
    """The oracle's float64 sum: Python floats added one by one in enrollment order."""
    out = []
    for d in range(DIM):
        s = 0.0
        for h in hashes:
            s += float(CONTENT[h][d])
        out.append(s)
    return out


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, min_size=1, max_size=20))
def test_random_writes_match_a_brute_force_model(ops: list[tuple[str, str, object]]) -> None:
    memory = MemoryStore(DIM)
    model: dict[str, list[tuple[str, str]]] = {}  # item -> [(image id, hash)], in order

    for op, item_id, arg in ops:
        holds = model.get(item_id, [])
        removed: list[str] = []
        out: EnrollOutcome | DeleteOutcome
        if op == "enroll":
            hashes: list[str] = arg  # type: ignore[assignment]
            out = memory.enroll(item_id, [NewImage(h, CONTENT[h]) for h in hashes])
            held_hashes = [h for _, h in holds]
            assert out.created == [
                h not in held_hashes and h not in hashes[:n] for n, h in enumerate(hashes)
            ]
            by_hash = {h: i for i, h in holds}
            for h, image_id, created in zip(hashes, out.image_ids, out.created, strict=True):
                if created:
                    assert image_id not in {i for images in model.values() for i, _ in images}
                    by_hash[h] = image_id
                    holds.append((image_id, h))
                assert image_id == by_hash[h]
            model[item_id] = holds
        elif not holds:
            with pytest.raises(ItemNotFoundError):
                if op == "delete_item":
                    memory.delete_item(item_id)
                else:
                    memory.delete_image(item_id, "img0")
            continue
        elif op == "delete_missing":
            with pytest.raises(ImageNotFoundError):
                memory.delete_image(item_id, "never-issued")
            continue
        elif op == "delete_image":
            image_id, h = holds[int(arg) % len(holds)]  # type: ignore[call-overload]
            out = memory.delete_image(item_id, image_id)
            model[item_id] = holds = [x for x in holds if x[0] != image_id]
            removed = [h]
        else:
            out = memory.delete_item(item_id)
            removed = [h for _, h in holds]
            model[item_id] = holds = []
        if not holds:
            model.pop(item_id, None)

        assert out.item.item_id == item_id and out.item.count == len(holds)
        assert out.item.embedding_sum.tolist() == in_order_sum([h for _, h in holds])
        if isinstance(out, DeleteOutcome):
            still_held = {h for images in model.values() for _, h in images}
            assert out.released_hashes == [h for h in dict.fromkeys(removed) if h not in still_held]

        assert {
            i: [(j, h) for j, (h, _) in m.images.items()] for i, m in memory.items.items()
        } == model
        for i, m in memory.items.items():
            assert m.count == len(model[i])
            assert m.embedding_sum.tolist() == in_order_sum([h for _, h in model[i]])
        assert dict(memory.refs) == Counter(h for images in model.values() for _, h in images)
