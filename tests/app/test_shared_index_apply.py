"""One Milvus collection written by several replicas: two Retrievers (each with its own item
locks, as two processes have) on one real Redis namespace and one real Milvus Lite server.

A write that reaches Milvus after a newer write of the same item is corrected by its own
writer (forced here: the older write is held until the newer one has settled, then let
through); threads racing on a few items end with Milvus holding exactly the store's newest
state of each; the change feed only notes versions on a shared index; a rebuild writes only
what differs from the store.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.change_follower import ChangeFollower
from app.metrics import ServiceMetrics
from app.retriever import Retriever, Upload
from artifact.onnx_embedder import OnnxEmbedder
from index.centroid_math import centroid_from_sum
from index.milvus_centroid_index import MilvusCentroidIndex
from index.shared_centroid_index import VersionedRow
from store.change_feed import RedisChangeFeed
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from tests import redis_server
from tests.milvus_lite_server import MilvusLiteServer
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis
pytest.importorskip("pymilvus")

_collections = itertools.count()


class CountingMilvusIndex(MilvusCentroidIndex):
    """The real index, recording every versioned write it sends; ``hold_next`` makes the next
    write wait (after recording it, before sending it) until ``release`` is set; ``jitter_s``
    delays each write by up to that long, as a network's varying latency does, so that racing
    writers often reach Milvus in another order than they committed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: list[tuple[str, int]] = []
        self.removes: list[str] = []
        self.hold_next = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.jitter_s = 0.0
        self._rng = np.random.default_rng()

    def upsert_versioned(self, rows: Iterable[VersionedRow]) -> None:
        rows = list(rows)
        self.writes.extend((row[0], row[2]) for row in rows)  # (item_id, version)
        if self.hold_next:
            self.hold_next = False
            self.held.set()
            assert self.release.wait(30)
        if self.jitter_s:
            time.sleep(self._rng.uniform(0, self.jitter_s))
        super().upsert_versioned(rows)

    def remove(self, item_id: str) -> bool:
        self.removes.append(item_id)
        return super().remove(item_id)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model_path)


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.fixture
def replicas(
    milvus: MilvusLiteServer, embedder: OnnxEmbedder, namespace: str
) -> Iterator[tuple[Retriever, Retriever]]:
    """Two Retrievers as two replicas have them: one Redis namespace, one Milvus collection,
    separate item locks and version memories."""
    collection = f"shared{next(_collections)}"
    made = []
    for _ in range(2):
        index = CountingMilvusIndex(milvus.uri, collection, embedder.embedding_dim, timeout=5.0)
        made.append(
            Retriever(
                embedder=embedder,
                store=RedisStore(redis_server.REDIS_URL, namespace),
                index=index,
                blobs=None,
                metrics=ServiceMetrics(),
                max_image_pixels=10**7,
                max_images_per_request=8,
            )
        )
    a, b = made
    a.rebuild_index()
    b.rebuild_index()
    yield a, b
    for r in made:
        r.close()


def counting(retriever: Retriever) -> CountingMilvusIndex:
    assert isinstance(retriever.index, CountingMilvusIndex)
    return retriever.index


def upload(tag: str) -> Upload:
    return Upload(f"{tag}.jpg", tag.encode())


def vectors(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    return rng.standard_normal((n, dim)).astype(np.float32)


def assert_milvus_equals_the_store(retriever: Retriever, namespace: str) -> None:
    """Every row of the shared collection is the store's newest state of its item (the vector
    recomputed here from the store's sum, the version), and no other row exists."""
    store = RedisStore(redis_server.REDIS_URL, namespace)
    expected = {s.item_id: s for s in store.iter_item_states()}
    store.close()
    index = counting(retriever)
    assert index.stored_versions() == {i: s.version for i, s in expected.items()}
    for item_id, state in expected.items():
        row = index.get(item_id)
        assert row is not None
        np.testing.assert_allclose(row, centroid_from_sum(state.embedding_sum), atol=1e-6)


def test_an_older_state_reaching_milvus_last_is_rewritten_by_its_writer(
    replicas: tuple[Retriever, Retriever], namespace: str
) -> None:
    a, b = replicas
    rng = np.random.default_rng(1)
    dim = a.embedder.embedding_dim
    first = a.commit_enrollment("mug", [upload("m0")], vectors(rng, 1, dim))
    index_a = counting(a)
    index_a.hold_next = True
    # A commits v(a) and is held before its Milvus write; B commits a newer state of the same
    # item meanwhile and settles it; then A's older write lands in Milvus last.
    done: list[object] = []
    writer = threading.Thread(
        target=lambda: done.append(a.commit_enrollment("mug", [upload("m1")], vectors(rng, 1, dim)))
    )
    writer.start()
    assert index_a.held.wait(10)
    newer = b.commit_enrollment("mug", [upload("m2")], vectors(rng, 1, dim))
    assert counting(b).stored_version("mug") == newer.outcome.item.version
    index_a.release.set()
    writer.join(10)
    (older,) = done
    assert isinstance(older, type(newer))
    v_first, v_older, v_newer = (r.outcome.item.version for r in (first, older, newer))
    assert v_first < v_older < v_newer
    assert not older.index_pending and not newer.index_pending
    # A wrote its own (older) state, read the store back, found B's, and wrote that.
    assert index_a.writes[-2:] == [("mug", v_older), ("mug", v_newer)]
    assert_milvus_equals_the_store(a, namespace)
    assert a.applier.version_of("mug") == v_newer


def test_racing_writers_on_two_replicas_leave_milvus_at_the_stores_newest_state(
    replicas: tuple[Retriever, Retriever], namespace: str
) -> None:
    dim = replicas[0].embedder.embedding_dim
    items = [f"r{i:02d}" for i in range(12)]
    rng = np.random.default_rng(2)
    for item in items:
        replicas[0].commit_enrollment(item, [upload(f"{item}-0")], vectors(rng, 1, dim))
    for r in replicas:
        counting(r).jitter_s = 0.004
    writers = [*replicas, *replicas]  # two threads per replica
    start = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def write_each_item_at_once(retriever: Retriever, seed: int) -> None:
        # Every thread writes item i at the same moment as the others, so the four commits
        # and their Milvus writes interleave; one thread deletes every third item instead.
        own = np.random.default_rng(seed)
        try:
            for i, item in enumerate(items):
                start.wait(10)
                if seed == 0 and i % 3 == 2:
                    result: object = retriever.delete_item(item)
                else:
                    tag = f"{item}-{seed}"
                    result = retriever.commit_enrollment(item, [upload(tag)], vectors(own, 1, dim))
                assert not result.index_pending  # type: ignore[union-attr]
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write_each_item_at_once, args=(r, seed))
        for seed, r in enumerate(writers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert_milvus_equals_the_store(replicas[0], namespace)
    for r in replicas:
        assert not r.reconciler.pending()


def test_the_change_feed_only_notes_versions_on_a_shared_index(
    replicas: tuple[Retriever, Retriever], namespace: str
) -> None:
    a, b = replicas
    identity: ModelIdentity = a.identity
    feed = RedisChangeFeed(redis_server.REDIS_URL, namespace, identity.dim)
    follower = ChangeFollower(
        feed=feed,
        applier=b.applier,
        item_locks=b.item_locks,
        rebuild=b.rebuild_from_store,
        metrics=b.metrics,
        block_ms=50,
    )
    follower.start(feed.cursor())
    try:
        rng = np.random.default_rng(3)
        before = len(counting(b).writes)
        written = a.commit_enrollment("cup", [upload("c0")], vectors(rng, 1, identity.dim))
        version = written.outcome.item.version
        deadline = time.monotonic() + 5
        while b.applier.version_of("cup") < version:
            assert time.monotonic() < deadline, "the follower never noted the write"
            time.sleep(0.01)
        assert len(counting(b).writes) == before  # B wrote nothing to Milvus
        assert counting(b).stored_version("cup") == version  # A's write is what B serves
    finally:
        follower.close()


def test_a_rebuild_writes_only_what_differs_from_the_store(
    replicas: tuple[Retriever, Retriever], namespace: str
) -> None:
    a, b = replicas
    dim = a.embedder.embedding_dim
    rng = np.random.default_rng(5)
    for i in range(30):
        a.commit_enrollment(f"i{i:02d}", [upload(f"i{i}")], vectors(rng, 1, dim))
    index_b = counting(b)
    before = len(index_b.writes), len(index_b.removes)
    assert b.applier.rebuild(b.store.iter_item_states(), reread=b.store.get_item_state) == 0
    assert (len(index_b.writes), len(index_b.removes)) == before  # in step: nothing written
    # Behind the service's back: a row lost from Milvus, an item changed and one added in the
    # store only, and a row Milvus holds for an item the store does not.
    super(CountingMilvusIndex, index_b).remove("i03")
    other = RedisStore(redis_server.REDIS_URL, namespace)
    other.enroll("i07", [NewImage("7" * 64, vectors(rng, 1, dim)[0])])
    other.enroll("new", [NewImage("n" * 64, vectors(rng, 1, dim)[0])])
    other.close()
    super(CountingMilvusIndex, index_b).upsert_versioned([("ghost", np.ones(dim), 1)])
    assert b.applier.rebuild(b.store.iter_item_states(), reread=b.store.get_item_state) == 4
    assert sorted(i for i, _ in index_b.writes[before[0] :]) == ["i03", "i07", "new"]
    assert index_b.removes[before[1] :] == ["ghost"]
    assert_milvus_equals_the_store(b, namespace)
