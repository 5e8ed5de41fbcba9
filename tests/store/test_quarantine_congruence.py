"""Quarantined images, one behaviour on both backends: kept and listed, out of the sums.

Every sum is checked against a brute-force oracle written here: the counted images' float32
embeddings added one by one in enrollment order in float64, and their unit vectors likewise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from store.errors import ImageNotFoundError, LastCountedImageError
from store.records import ItemState, NewImage, SuspectImage
from store.redis_store import RedisStore
from store.store import Store
from store.write_plan import EnrollVerdict
from tests.store.conftest import StoreFactory
from tests.store.test_store_congruence import IDENTITY, image


class Judge:
    """Quarantines the request positions it is given; reports each new image it sees as a
    suspect (so the outcome's flags can be checked); records what it was shown."""

    def __init__(self, quarantine: Sequence[int]) -> None:
        self.quarantine = frozenset(quarantine)
        self.seen: list[tuple[int, list[int]]] = []

    def __call__(
        self, state: ItemState, positions: Sequence[int], image_ids: Sequence[str]
    ) -> EnrollVerdict:
        self.seen.append((state.count, list(positions)))
        suspects = tuple(
            SuspectImage(i, ("closer_to_other_item",), 0.1, -1.0, "other", 0.9)
            for p, i in zip(positions, image_ids, strict=True)
            if p in self.quarantine
        )
        return EnrollVerdict(suspects, self.quarantine)


def oracle(images: Sequence[NewImage]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    total = np.zeros(IDENTITY.dim, np.float64)
    unit = np.zeros(IDENTITY.dim, np.float64)
    for i in images:
        e = i.embedding.astype(np.float32)
        total = total + e
        u = e.astype(np.float64)
        unit = unit + u / np.sqrt(u @ u)
    return total, unit


def assert_sums(state: ItemState | None, counted: Sequence[NewImage]) -> None:
    assert state is not None and state.count == len(counted)
    total, unit = oracle(counted)
    np.testing.assert_allclose(state.embedding_sum, total, rtol=1e-12, atol=1e-12)
    assert state.unit_sum is not None
    np.testing.assert_allclose(state.unit_sum, unit, rtol=1e-12, atol=1e-12)


@pytest.fixture
def claimed(store: Store) -> Store:
    store.claim_model_identity(IDENTITY)
    return store


def test_a_judged_enrollment_keeps_quarantined_images_out_of_the_sums_durably(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    store.claim_model_identity(IDENTITY)
    first = [image("a"), image("b")]
    store.enroll("cat", first)
    judge = Judge(quarantine=[2])  # request positions: "d"
    added = [image("c"), image("d"), image("e")]
    out = store.enroll("cat", [image("a"), *added], judge=judge)
    # The judge saw the item with every new image counted, and only the new ones' positions.
    assert judge.seen == [(5, [1, 2, 3])]
    out2 = store.enroll("cat", [image("f")], judge=Judge(quarantine=[0]))
    counted = [*first, added[0], added[2]]
    assert_sums(out2.item, counted)
    d_id, f_id = out.image_ids[2], out2.image_ids[0]
    assert [s.image_id for s in out.suspects] == [d_id] and out.suspects[0].quarantined
    assert out2.suspects[0].quarantined
    assert out.created == [False, True, True, True]
    for s in (store, store_factory()):  # and as a second connection reads it
        record = s.get_item("cat")
        assert record is not None and len(record.image_ids) == 6
        assert record.quarantined_image_ids == [d_id, f_id]
        assert_sums(s.get_item_state("cat"), counted)
        assert_sums({x.item_id: x for x in s.iter_item_states()}["cat"], counted)
        images = s.item_images(["cat"])["cat"]
        assert [i.image_id for i in images if i.quarantined] == [d_id, f_id]
        assert [i.image_id for i in s.iter_images() if i.quarantined] == [d_id, f_id]
        assert s.counts() == (1, 6)  # kept: every image counts as stored


def test_a_new_item_whose_every_image_is_flagged_quarantines_none(claimed: Store) -> None:
    imgs = [image("a"), image("b")]
    out = claimed.enroll("cat", imgs, judge=Judge(quarantine=[0, 1]))
    assert_sums(out.item, imgs)
    assert len(out.suspects) == 2 and not any(s.quarantined for s in out.suspects)
    record = claimed.get_item("cat")
    assert record is not None and record.quarantined_image_ids == []


def test_release_and_quarantine_recompute_the_sums_in_enrollment_order(claimed: Store) -> None:
    imgs = [image(t) for t in "abcd"]
    ids = claimed.enroll("cat", imgs, judge=Judge(quarantine=[1, 2])).image_ids
    assert_sums(claimed.get_item_state("cat"), [imgs[0], imgs[3]])
    released = claimed.set_image_quarantine("cat", ids[2], False)
    assert_sums(released, [imgs[0], imgs[2], imgs[3]])
    assert released.version == claimed.last_version()
    held = claimed.set_image_quarantine("cat", ids[0], True)
    assert_sums(held, [imgs[2], imgs[3]])
    record = claimed.get_item("cat")
    assert record is not None and record.quarantined_image_ids == [ids[0], ids[1]]
    # Already so: nothing written.
    version = claimed.last_version()
    same = claimed.set_image_quarantine("cat", ids[1], True)
    assert claimed.last_version() == version and same.version == version
    assert_sums(same, [imgs[2], imgs[3]])


def test_the_last_counted_image_cannot_be_quarantined(claimed: Store) -> None:
    imgs = [image("a"), image("b")]
    ids = claimed.enroll("cat", imgs, judge=Judge(quarantine=[1])).image_ids
    version = claimed.last_version()
    with pytest.raises(LastCountedImageError):
        claimed.set_image_quarantine("cat", ids[0], True)
    assert claimed.last_version() == version
    assert_sums(claimed.get_item_state("cat"), [imgs[0]])
    with pytest.raises(ImageNotFoundError):
        claimed.set_image_quarantine("cat", "no-such-image", True)


def test_deletes_and_quarantined_images(claimed: Store) -> None:
    imgs = [image(t) for t in "abcd"]
    ids = claimed.enroll("cat", imgs, judge=Judge(quarantine=[1, 3])).image_ids
    # A quarantined image deleted: the sums stay those of the counted ones.
    out = claimed.delete_image("cat", ids[1])
    assert_sums(out.item, [imgs[0], imgs[2]])
    # The counted ones deleted: the quarantined one left is all the item has, and counts.
    claimed.delete_image("cat", ids[0])
    out = claimed.delete_image("cat", ids[2])
    assert_sums(out.item, [imgs[3]])
    record = claimed.get_item("cat")
    assert record is not None and record.image_ids == [ids[3]]
    assert record.quarantined_image_ids == []
    # An item with a quarantined image deleted whole leaves nothing behind.
    more = claimed.enroll("dog", [image("e"), image("f")], judge=Judge(quarantine=[1]))
    assert more.suspects[0].quarantined
    claimed.delete_item("dog")
    assert claimed.get_item("dog") is None
    assert not claimed.is_hash_referenced(image("f").content_hash)
    if isinstance(claimed, RedisStore):
        assert not [k for k in claimed.namespace_keys() if ":quarantine:" in k]
