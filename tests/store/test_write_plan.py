"""The write plan without a store: explicit expected plans, and random writes against an oracle.

The property test applies every plan to ``MemoryStore``, a third backend written here that
checks each mutation's precondition (e.g. ``DeleteItem`` names exactly the images left), and
compares outcomes and state with a brute-force model that keeps each item's images in a list
and its attributes as a dict patched by an RFC 7396 merge written here.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import assert_never

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import (
    AttributesInvalidError,
    AttributesTooLargeError,
    ImageNotFoundError,
    ItemNotFoundError,
)
from store.item_attributes import Attributes
from store.mutations import (
    CreateItem,
    DeleteItem,
    Mutation,
    PutImage,
    ReleaseHash,
    RemoveImage,
    SetAttributes,
    SetItemTotals,
)
from store.records import DeleteOutcome, EnrollOutcome, NewImage, PatchOutcome
from store.write_plan import (
    HeldImage,
    ItemTotals,
    hashes_to_look_up,
    plan_delete_image,
    plan_delete_item,
    plan_enroll,
    plan_patch_attributes,
)


def ids(prefix: str = "new") -> Callable[[], str]:
    """A deterministic stand-in for uuid4: ``new0``, ``new1``, ..."""
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter)}"


def no_ids() -> str:
    raise AssertionError("the plan drew a new image id although it writes no image")


def img(content_hash: str, *values: float) -> NewImage:
    return NewImage(content_hash, np.array(values, dtype=np.float32))


def totals(
    count: int,
    *values: float,
    unit: Sequence[float] | None = None,
    attributes: Attributes | None = None,
) -> ItemTotals:
    """Stored totals; the unit sum is zero unless given (the plan only adds to it)."""
    embedding_sum = np.array(values, dtype=np.float64)
    unit_sum = np.zeros_like(embedding_sum) if unit is None else np.array(unit, np.float64)
    return ItemTotals(count, embedding_sum, unit_sum, attributes=attributes or {})


def held(image_id: str, content_hash: str, *values: float, out: bool = False) -> HeldImage:
    return HeldImage(image_id, content_hash, np.array(values, dtype=np.float32), quarantined=out)


def plain(mutations: Sequence[Mutation]) -> list[tuple[object, ...]]:
    """Mutations as comparable tuples: (kind, field values...), arrays as (dtype, values); a
    ``quarantined`` field left out when False (what most plans put)."""
    out = []
    for m in mutations:
        values = [
            getattr(m, f.name)
            for f in fields(m)
            if not (f.name == "quarantined" and getattr(m, f.name) is False)
        ]
        out.append(
            (
                type(m).__name__,
                *((v.dtype.name, v.tolist()) if isinstance(v, np.ndarray) else v for v in values),
            )
        )
    return out


# -- enroll: explicit plans ---------------------------------------------------------------------


def test_enrolling_a_new_item_creates_it_puts_images_then_sets_totals() -> None:
    # Norms 5 and 10: the unit vectors are exact decimal fractions, added in input order.
    plan = plan_enroll(
        "cat",
        [img("a", 3, 4), img("b", -8, 6)],
        stored=None,
        known={},
        claimed_dim=2,
        new_id=ids(),
    )
    unit_sum = [3 / 5 + -8 / 10, 4 / 5 + 6 / 10]
    assert plain(plan.mutations) == [
        ("CreateItem", "cat", 2),
        ("PutImage", "cat", "new0", "a", ("float32", [3.0, 4.0])),
        ("PutImage", "cat", "new1", "b", ("float32", [-8.0, 6.0])),
        ("SetItemTotals", "cat", 2, ("float64", [-5.0, 10.0]), ("float64", unit_sum)),
    ]
    out = plan.outcome
    assert out.image_ids == ["new0", "new1"] and out.created == [True, True]
    assert out.item.item_id == "cat" and out.item.count == 2
    assert out.item.embedding_sum.dtype == np.float64
    assert out.item.embedding_sum.tolist() == [-5.0, 10.0]
    assert out.item.unit_sum is not None and out.item.unit_sum.tolist() == unit_sum
    assert out.item.attributes == {}


def test_duplicates_within_the_call_and_against_the_item_reuse_ids() -> None:
    stored = totals(1, 1, 1, unit=[0.6, 0.8])
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
        ("SetItemTotals", "cat", 3, ("float64", [3.0, 4.0]), ("float64", [0.6 + 1, 0.8 + 1])),
    ]
    assert plan.outcome.item.count == 3 and plan.outcome.item.embedding_sum.tolist() == [3, 4]
    np.testing.assert_array_equal(stored.embedding_sum, before)  # the read state is not mutated
    assert stored.unit_sum.tolist() == [0.6, 0.8]


def test_an_enrollment_of_held_images_only_writes_nothing() -> None:
    stored = totals(2, 3, -1, unit=[0.5, 0.25], attributes={"sku": "1"})
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
    assert plan.outcome.item.unit_sum is not None
    assert plan.outcome.item.unit_sum.tolist() == [0.5, 0.25]
    assert plan.outcome.item.attributes == {"sku": "1"}


def test_the_sum_is_added_in_input_order_onto_the_stored_sum() -> None:
    # In float64, (1e16 + 1) + 1 == 1e16 but 1e16 + (1 + 1) == 1e16 + 2: the order is the rule.
    plan = plan_enroll(
        "cat",
        [img("a", 1), img("b", 1)],
        stored=totals(1, 1e16, unit=[1]),
        known={},
        claimed_dim=None,
        new_id=ids(),
    )
    assert plan.outcome.item.embedding_sum.tolist() == [1e16]
    assert plain(plan.mutations)[-1] == (
        "SetItemTotals",
        "cat",
        3,
        ("float64", [1e16]),
        ("float64", [3.0]),
    )


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
    stored = None if stored_dim is None else totals(1, *([0.0] * stored_dim))
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
        held("i-one", "one", 3, 4),
        held("i-two", "two", 1, 0),
    ]
    plan = plan_delete_image(
        "cat",
        "i-big",
        stored=totals(3, 1e20, 1e20, unit=[9, 9], attributes={"k": [1]}),
        held=item,
        refs={"big": 2, "one": 1, "two": 1},
    )
    unit_sum = [0.0 + 3 / 5 + 1.0, 0.0 + 4 / 5 + 0.0]  # the rest's, not the stored one's
    assert plain(plan.mutations) == [
        ("RemoveImage", "cat", "i-big", "big"),
        ("SetItemTotals", "cat", 2, ("float64", [4.0, 4.0]), ("float64", unit_sum)),
    ]
    assert plan.outcome.item.count == 2 and plan.outcome.item.embedding_sum.tolist() == [4, 4]
    assert plan.outcome.item.unit_sum is not None
    assert plan.outcome.item.unit_sum.tolist() == unit_sum
    assert plan.outcome.item.attributes == {"k": [1]}  # kept
    assert plan.outcome.released_hashes == []  # another item still holds "big"


def test_deleting_the_last_image_deletes_the_item_and_releases_its_hash() -> None:
    plan = plan_delete_image(
        "cat",
        "i-a",
        stored=totals(1, 4, 5, 6, attributes={"k": 1}),
        held=[held("i-a", "a", 4, 5, 6)],
        refs={"a": 1},
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
    assert gone.unit_sum is not None and gone.unit_sum.tolist() == [0, 0, 0]
    assert gone.attributes == {}


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


# -- attributes: explicit plans -----------------------------------------------------------------


def test_attributes_of_a_new_item_are_set_after_its_totals() -> None:
    plan = plan_enroll(
        "cat",
        [img("a", 3, 4)],
        stored=None,
        known={},
        claimed_dim=2,
        new_id=ids(),
        attributes_patch={"sku": "123", "gone": None, "dims": {"w": 2, "h": None}},
    )
    assert plain(plan.mutations)[0] == ("CreateItem", "cat", 2)
    assert plain(plan.mutations)[-2][0] == "SetItemTotals"
    assert plan.mutations[-1] == SetAttributes("cat", {"sku": "123", "dims": {"w": 2}})
    assert plan.outcome.item.attributes == {"sku": "123", "dims": {"w": 2}}


def test_a_patch_with_held_images_only_is_a_write_of_the_attributes_alone() -> None:
    stored = totals(1, 3, 4, unit=[0.6, 0.8], attributes={"sku": "1", "color": "red"})
    plan = plan_enroll(
        "cat",
        [img("a", 3, 4)],
        stored=stored,
        known={"a": "id-a"},
        claimed_dim=2,
        new_id=no_ids,
        attributes_patch={"color": None, "size": 42},
    )
    assert plan.mutations == (SetAttributes("cat", {"sku": "1", "size": 42}),)
    assert plan.outcome.created == [False] and plan.outcome.item.count == 1
    assert stored.attributes == {"sku": "1", "color": "red"}  # the read state is not mutated
    same = plan_enroll(
        "cat",
        [img("a", 3, 4)],
        stored=stored,
        known={"a": "id-a"},
        claimed_dim=2,
        new_id=no_ids,
        attributes_patch={"sku": "1", "absent": None},
    )
    assert same.mutations == ()  # merged equal to what is held: nothing to write


def test_patching_merges_by_rfc_7396() -> None:
    stored = totals(
        2, 1, 1, unit=[1, 0], attributes={"a": "b", "c": {"d": "e", "f": "g"}, "n": [1, 2]}
    )
    plan = plan_patch_attributes(
        "cat", {"a": "z", "c": {"f": None, "x": {"y": None}}, "n": {"k": 1}}, stored=stored
    )
    want = {"a": "z", "c": {"d": "e", "x": {}}, "n": {"k": 1}}
    assert plan.mutations == (SetAttributes("cat", want),)
    out = plan.outcome
    assert isinstance(out, PatchOutcome) and out.item.attributes == want
    assert out.item.count == 2 and out.item.embedding_sum.tolist() == [1, 1]
    assert out.item.unit_sum is not None and out.item.unit_sum.tolist() == [1, 0]
    noop = plan_patch_attributes("cat", {"a": "b", "zz": None}, stored=stored)
    assert noop.mutations == () and noop.outcome.item.attributes == stored.attributes
    with pytest.raises(ItemNotFoundError):
        plan_patch_attributes("nobody", {"a": 1}, stored=None)


def test_the_size_limit_counts_the_merged_compact_json() -> None:
    stored = totals(1, 1, attributes={"a": "x" * 10})  # {"a":"xxxxxxxxxx"}: 18 bytes
    assert len(json.dumps(stored.attributes, separators=(",", ":"))) == 18
    # {"a":"xxxxxxxxxx","b":"é"}: 18 - 1 + 9 bytes, é being 2 bytes of UTF-8.
    exact = plan_patch_attributes("cat", {"b": "é"}, stored=stored, max_attributes_bytes=27)
    assert exact.mutations == (SetAttributes("cat", {"a": "x" * 10, "b": "é"}),)
    with pytest.raises(AttributesTooLargeError) as err:
        plan_patch_attributes("cat", {"b": "é"}, stored=stored, max_attributes_bytes=26)
    assert (err.value.size, err.value.limit) == (27, 26)
    # Shrinking below the limit is fine even from above it; a new item's patch counts too.
    assert plan_patch_attributes(
        "cat", {"a": None}, stored=stored, max_attributes_bytes=5
    ).mutations == (SetAttributes("cat", {}),)
    with pytest.raises(AttributesTooLargeError):
        plan_enroll(
            "dog",
            [img("a", 1)],
            stored=None,
            known={},
            claimed_dim=1,
            new_id=no_ids,
            attributes_patch={"k": "v" * 10},
            max_attributes_bytes=10,
        )


@pytest.mark.parametrize(
    "patch",
    [[1, 2], "text", None, {"x": math.nan}, {"x": {1: "int key"}}, {"x": {1, 2}}],
    ids=["array", "string", "null", "nan", "int-key", "set"],
)
def test_a_patch_that_is_no_json_object_is_refused(patch: object) -> None:
    with pytest.raises(AttributesInvalidError):
        plan_patch_attributes("cat", patch, stored=totals(1, 1))  # type: ignore[arg-type]
    if patch is None:
        return  # at enrollment, None is "no patch"
    with pytest.raises(AttributesInvalidError):
        plan_enroll(
            "cat",
            [img("a", 1)],
            stored=None,
            known={},
            claimed_dim=1,
            new_id=no_ids,
            attributes_patch=patch,  # type: ignore[arg-type]
        )


# -- random writes: plans applied to a checking in-memory store, against an oracle -------------


@dataclass
class MemoryItem:
    count: int
    embedding_sum: npt.NDArray[np.float64]
    unit_sum: npt.NDArray[np.float64]
    images: dict[str, tuple[str, npt.NDArray[np.float32]]] = field(default_factory=dict)
    attributes: Attributes = field(default_factory=dict)


class MemoryStore:
    """Reads plan inputs and applies mutations, asserting each one's precondition."""

    def __init__(self, claimed_dim: int, max_attributes_bytes: int) -> None:
        self.claimed_dim = claimed_dim
        self.max_attributes_bytes = max_attributes_bytes
        self.items: dict[str, MemoryItem] = {}
        self.refs: Counter[str] = Counter()
        self.used_ids: set[str] = set()
        self.new_id = ids("img")
        self.applied: tuple[Mutation, ...] = ()  # the last plan's mutations

    def totals(self, item_id: str) -> ItemTotals | None:
        item = self.items.get(item_id)
        if item is None:
            return None
        return ItemTotals(
            item.count,
            item.embedding_sum.copy(),
            item.unit_sum.copy(),
            attributes=item.attributes,
        )

    def held(self, item_id: str) -> list[HeldImage]:
        item = self.items.get(item_id)
        images = {} if item is None else item.images
        return [HeldImage(i, h, e) for i, (h, e) in images.items()]

    def enroll(
        self, item_id: str, images: list[NewImage], patch: Attributes | None
    ) -> EnrollOutcome:
        wanted = set(hashes_to_look_up(images))
        known = {h.content_hash: h.image_id for h in self.held(item_id) if h.content_hash in wanted}
        plan = plan_enroll(
            item_id,
            images,
            stored=self.totals(item_id),
            known=known,
            claimed_dim=self.claimed_dim,
            new_id=self.new_id,
            attributes_patch=patch,
            max_attributes_bytes=self.max_attributes_bytes,
        )
        self.apply(plan.mutations)
        return plan.outcome

    def patch(self, item_id: str, patch: Attributes) -> PatchOutcome:
        plan = plan_patch_attributes(
            item_id,
            patch,
            stored=self.totals(item_id),
            max_attributes_bytes=self.max_attributes_bytes,
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
        self.applied = tuple(mutations)
        for m in mutations:
            match m:
                case CreateItem():
                    assert m.item_id not in self.items
                    zero = np.zeros(m.dim)
                    self.items[m.item_id] = MemoryItem(0, zero, zero.copy())
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
                    assert m.embedding_sum.dtype == m.unit_sum.dtype == np.float64
                    item.count, item.embedding_sum = m.count, m.embedding_sum
                    item.unit_sum = m.unit_sum
                case SetAttributes():
                    item = self.items[m.item_id]
                    assert m.attributes != item.attributes, (
                        "an attribute write that changes nothing"
                    )
                    assert size_of(m.attributes) <= self.max_attributes_bytes
                    item.attributes = m.attributes
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
# Small enough that random patches are refused now and then.
MAX_ATTRIBUTES_BYTES = 40

attribute_value = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from(["x", "yy", "é"]),
    st.booleans(),
    st.dictionaries(st.sampled_from(["p", "q"]), st.one_of(st.none(), st.integers(0, 9))),
)
patches = st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), attribute_value, max_size=3)

operation = st.one_of(
    st.tuples(
        st.just("enroll"),
        st.sampled_from(ITEMS),
        st.tuples(
            st.lists(st.sampled_from(list(CONTENT)), min_size=1, max_size=4),
            st.one_of(st.none(), patches),
        ),
    ),
    st.tuples(st.just("patch"), st.sampled_from(ITEMS), patches),
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


def unit_sum(hashes: list[str]) -> list[float]:
    """The oracle's sum of L2-normalised embeddings, in Python floats."""
    out = [0.0] * DIM
    for h in hashes:
        v = [float(x) for x in CONTENT[h]]
        norm = math.sqrt(sum(x * x for x in v))
        out = [o + x / norm for o, x in zip(out, v, strict=True)]
    return out


def rfc7396(target: object, patch: object) -> object:
    """RFC 7396 section 2, MergePatch(Target, Patch), transcribed."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = rfc7396(out.get(name), value)
    return out


def size_of(attrs: Attributes) -> int:
    return len(
        json.dumps(attrs, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    )


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operation, min_size=1, max_size=20))
def test_random_writes_match_a_brute_force_model(ops: list[tuple[str, str, object]]) -> None:
    memory = MemoryStore(DIM, MAX_ATTRIBUTES_BYTES)
    model: dict[str, list[tuple[str, str]]] = {}  # item -> [(image id, hash)], in order
    attrs: dict[str, Attributes] = {}  # item -> its attributes (absent: {})

    for op, item_id, arg in ops:
        holds = model.get(item_id, [])
        removed: list[str] = []
        out: EnrollOutcome | DeleteOutcome | PatchOutcome
        before = {i: (len(m.images), m.attributes) for i, m in memory.items.items()}
        if op in ("enroll", "patch"):
            if op == "enroll":
                hashes, patch = arg  # type: ignore[misc]
            else:
                hashes, patch = [], arg
            held_attrs = attrs.get(item_id, {})
            wanted = held_attrs if patch is None else rfc7396(held_attrs, patch)
            assert isinstance(wanted, dict)
            if op == "patch" and not holds:
                with pytest.raises(ItemNotFoundError):
                    memory.patch(item_id, patch)
                continue
            if patch is not None and size_of(wanted) > MAX_ATTRIBUTES_BYTES:
                with pytest.raises(AttributesTooLargeError):
                    if op == "enroll":
                        memory.enroll(item_id, [NewImage(h, CONTENT[h]) for h in hashes], patch)
                    else:
                        memory.patch(item_id, patch)
                # Refused before anything was applied: the store is as it was.
                assert {i: (len(m.images), m.attributes) for i, m in memory.items.items()} == (
                    before
                )
                continue
            if op == "patch":
                out = memory.patch(item_id, patch)
                assert memory.applied == (
                    () if wanted == held_attrs else (SetAttributes(item_id, wanted),)
                )
            else:
                out = memory.enroll(item_id, [NewImage(h, CONTENT[h]) for h in hashes], patch)
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
                # A write iff it adds an image or changes the attributes.
                assert bool(memory.applied) == (any(out.created) or wanted != held_attrs)
            attrs[item_id] = wanted
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
            attrs.pop(item_id, None)

        assert out.item.item_id == item_id and out.item.count == len(holds)
        assert out.item.embedding_sum.tolist() == in_order_sum([h for _, h in holds])
        assert out.item.unit_sum is not None
        np.testing.assert_allclose(
            out.item.unit_sum, unit_sum([h for _, h in holds]), rtol=1e-12, atol=1e-15
        )
        assert out.item.attributes == attrs.get(item_id, {})
        if isinstance(out, DeleteOutcome):
            still_held = {h for images in model.values() for _, h in images}
            assert out.released_hashes == [h for h in dict.fromkeys(removed) if h not in still_held]

        assert {
            i: [(j, h) for j, (h, _) in m.images.items()] for i, m in memory.items.items()
        } == model
        assert {i: m.attributes for i, m in memory.items.items()} == {i: attrs[i] for i in model}
        for i, m in memory.items.items():
            assert m.count == len(model[i])
            assert m.embedding_sum.tolist() == in_order_sum([h for _, h in model[i]])
            np.testing.assert_allclose(
                m.unit_sum, unit_sum([h for _, h in model[i]]), rtol=1e-12, atol=1e-15
            )
        assert dict(memory.refs) == Counter(h for images in model.values() for _, h in images)
