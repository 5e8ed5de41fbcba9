"""Backup and restore on real stores (SQLite files, namespaces of the real test Redis) and real
blob directories: a backup taken while a writer enrolls and deletes is one consistent moment
with every blob, and restores into an empty target answering exactly as the source did then."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from store.backup_manifest import BLOBS_NAME, BackupManifest
from store.directory_blob_store import DirectoryBlobStore
from store.errors import StoreError
from store.idempotency import IdempotencyClaim, IdempotentReplay
from store.mutations import StoredResponse
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from store.store_backup import back_up
from store.store_restore import TargetNotEmptyError, restore
from store.thumbnail_blobs import thumbnail_blobs, thumbnail_key
from tests import redis_server
from tests.store.conftest import _drop_namespace

DIM = 16
IDENTITY = ModelIdentity("m", "1", DIM)
LIVE = 20  # items the writer keeps: it enrolls item i, then deletes item i - LIVE

Opener = Callable[[str], Store]


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a store by name: a file under tmp_path, or a namespace of its own; all dropped."""
    opened: list[Store] = []
    namespaces: dict[str, str] = {}
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)

    def make(name: str) -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / name / "store.sqlite3")
        else:
            ns = namespaces.setdefault(name, f"test-{uuid.uuid4().hex}")
            store = RedisStore(redis_server.REDIS_URL, namespace=ns)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    for ns in namespaces.values():
        _drop_namespace(ns)


@dataclass
class Written:
    """What the writer committed: item → (image ids, content hashes, embeddings)."""

    items: dict[str, tuple[list[str], list[str], list[np.ndarray]]]


def enroll(
    store: Store, blobs: DirectoryBlobStore, item_id: str, rng: np.random.Generator
) -> Written:
    """Enroll two fresh images the way the retriever does: blobs first, then the store."""
    hashes, embeddings = [], []
    for _ in range(2):
        data = rng.bytes(256)
        h = hashlib.sha256(data).hexdigest()
        blobs.put(h, data)
        hashes.append(h)
        embeddings.append(rng.normal(size=DIM).astype(np.float32))
    out = store.enroll(item_id, [NewImage(h, e) for h, e in zip(hashes, embeddings, strict=True)])
    return Written({item_id: (out.image_ids, hashes, embeddings)})


def delete(store: Store, blobs: DirectoryBlobStore, item_id: str) -> None:
    for h in store.delete_item(item_id).released_hashes:
        blobs.delete(h)


def item_name(i: int) -> str:
    return f"item-{i:05d}"


def check_restored(target: Store, blobs: DirectoryBlobStore, written: Written) -> list[int]:
    """The restored store holds, for each item it has, exactly what the writer committed;
    returns the item numbers it holds."""
    numbers = []
    images = {r.image_id: r for r in target.iter_images()}
    for state in target.iter_item_states():
        image_ids, hashes, embeddings = written.items[state.item_id]
        record = target.get_item(state.item_id)
        assert record is not None and record.image_ids == image_ids
        assert state.count == 2
        expected = embeddings[0].astype(np.float64) + embeddings[1]
        np.testing.assert_array_equal(state.embedding_sum, expected)
        for image_id, h, e in zip(image_ids, hashes, embeddings, strict=True):
            assert images[image_id].content_hash == h and blobs.exists(h)
            np.testing.assert_array_equal(images[image_id].embedding, e)
        numbers.append(int(state.item_id.removeprefix("item-")))
    return numbers


def test_backups_taken_while_writing_restore_one_consistent_moment(
    open_store: Opener, tmp_path: Path
) -> None:
    source = open_store("source")
    source.claim_model_identity(IDENTITY)
    blobs = DirectoryBlobStore(tmp_path / "source-blobs")
    rng = np.random.default_rng(7)
    written = Written({})
    for i in range(LIVE):
        written.items.update(enroll(source, blobs, item_name(i), rng).items)
    stop = threading.Event()
    failures: list[BaseException] = []
    writer_rng = np.random.default_rng(8)

    def write() -> None:
        try:
            for i in itertools.count(LIVE):
                if stop.is_set():
                    return
                written.items.update(enroll(source, blobs, item_name(i), writer_rng).items)
                delete(source, blobs, item_name(i - LIVE))
        except BaseException as exc:
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    reports = []
    try:
        for n in range(3):
            reports.append(back_up(source, blobs, tmp_path / f"backup-{n}", grace_s=0))
    finally:
        stop.set()
        writer.join()
    assert failures == []
    for n, report in enumerate(reports):
        manifest = report.manifest
        assert manifest.backend == source.backend and manifest.model == IDENTITY
        assert manifest.missing_blobs == [] and manifest.blobs_copied == manifest.images
        target = open_store(f"target-{n}")
        target_blobs = DirectoryBlobStore(tmp_path / f"target-{n}-blobs")
        restored = restore(tmp_path / f"backup-{n}", target, target_blobs)
        assert restored.missing_blobs == [] and restored.corrupt_blobs == []
        assert (restored.items, restored.images) == (manifest.items, manifest.images)
        numbers = check_restored(target, target_blobs, written)
        # One moment of a writer that enrolls i then deletes i - LIVE: LIVE or LIVE + 1
        # consecutive items, never a gap or a half-done write.
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert len(numbers) in (LIVE, LIVE + 1) and manifest.items == len(numbers)
        assert target.get_model_identity() == IDENTITY
    # The deletions deferred during the backups were applied after them: no orphan is left.
    live = {r.content_hash for r in source.iter_images()}
    assert set(blobs.iter_hashes()) == live
    assert not blobs.deletion_hold.is_held()
    print("deferred deletions per backup:", [r.deferred_deletes for r in reports])


def test_restore_refuses_a_target_holding_data_unless_forced(
    open_store: Opener, tmp_path: Path
) -> None:
    source = open_store("source")
    source.claim_model_identity(IDENTITY)
    blobs = DirectoryBlobStore(tmp_path / "source-blobs")
    rng = np.random.default_rng(1)
    written = enroll(source, blobs, item_name(1), rng)
    back_up(source, blobs, tmp_path / "backup")
    with pytest.raises(StoreError, match="not empty"):
        back_up(source, blobs, tmp_path / "backup")

    target = open_store("target")
    target.claim_model_identity(IDENTITY)
    target_blobs = DirectoryBlobStore(tmp_path / "target-blobs")
    other = enroll(target, target_blobs, item_name(2), rng)
    with pytest.raises(TargetNotEmptyError, match="--force"):
        restore(tmp_path / "backup", target, target_blobs)
    assert target.counts() == (1, 2)  # untouched
    report = restore(tmp_path / "backup", target, target_blobs, force=True)
    assert report.missing_blobs == [] and target.counts() == (1, 2)
    assert check_restored(target, target_blobs, written) == [1]
    assert target.get_item(item_name(2)) is None and other.items  # replaced


def test_restore_lists_the_referenced_blobs_the_backup_lacks(
    open_store: Opener, tmp_path: Path
) -> None:
    source = open_store("source")
    source.claim_model_identity(IDENTITY)
    blobs = DirectoryBlobStore(tmp_path / "source-blobs")
    rng = np.random.default_rng(2)
    for i in range(3):
        enroll(source, blobs, item_name(i), rng)
    lost = next(r.content_hash for r in source.iter_images())
    blobs.remove_file(blobs.path_for(lost))  # lost from the live directory already
    report = back_up(source, blobs, tmp_path / "backup")
    assert report.manifest.missing_blobs == [lost] and report.manifest.blobs_copied == 5
    target = open_store("target")
    restored = restore(tmp_path / "backup", target, DirectoryBlobStore(tmp_path / "target-blobs"))
    assert restored.missing_blobs == [lost] and restored.blobs_restored == 5
    assert restored.images == 6


def test_restore_checks_the_backup_and_the_backend(open_store: Opener, tmp_path: Path) -> None:
    source = open_store("source")
    source.claim_model_identity(IDENTITY)
    (tmp_path / "half").mkdir()
    with pytest.raises(StoreError, match="not a complete backup"):
        restore(tmp_path / "half", open_store("target"), None)
    back_up(source, None, tmp_path / "backup")
    manifest = BackupManifest.read(tmp_path / "backup")
    assert not manifest.blobs_kept and not (tmp_path / "backup" / BLOBS_NAME).exists()
    other = (
        RedisStore(redis_server.REDIS_URL, namespace=f"test-{uuid.uuid4().hex}")
        if isinstance(source, SqliteStore)
        else SqliteStore(tmp_path / "other.sqlite3")
    )
    try:
        with pytest.raises(StoreError, match=f"backup of a {source.backend} store"):
            restore(tmp_path / "backup", other, None)
    finally:
        other.close()


def test_idempotency_records_are_restored_with_their_expiry(
    open_store: Opener, tmp_path: Path
) -> None:
    """A restored store replays the answers its source had recorded, until they expire; on
    Redis the record keeps its TTL (a copy without one would stay in memory forever)."""
    source = open_store("source")
    source.claim_model_identity(IDENTITY)
    blobs = DirectoryBlobStore(tmp_path / "source-blobs")
    answer = StoredResponse(204, b"", None)
    out = source.enroll(item_name(1), [NewImage("a" * 64, np.ones(DIM, np.float32))])
    long_lived = IdempotencyClaim("k:long", "fp", 3600.0, lambda _: answer)
    short_lived = IdempotencyClaim("k:short", "fp", 0.5, lambda _: answer)
    source.delete_image(item_name(1), out.image_ids[0], long_lived)
    source.enroll(item_name(2), [NewImage("b" * 64, np.ones(DIM, np.float32))], short_lived)
    back_up(source, blobs, tmp_path / "backup")

    target = open_store("target")
    restore(tmp_path / "backup", target, DirectoryBlobStore(tmp_path / "target-blobs"))
    record = target.get_idempotency_record("k:long")
    assert record is not None and record.response == answer
    assert record.expires_at == pytest.approx(time.time() + 3600, abs=60)
    with pytest.raises(IdempotentReplay):
        target.delete_image(item_name(1), out.image_ids[0], long_lived)
    if isinstance(target, RedisStore):
        client = redis.Redis.from_url(redis_server.REDIS_URL)
        ttl_ms = client.pttl(f"{target.namespace}:idem:k:long")
        client.close()
        assert 3500_000 < ttl_ms <= 3600_000
    time.sleep(0.6)
    assert target.get_idempotency_record("k:short") is None


def test_thumbnails_are_backed_up_and_restored_with_their_originals(
    open_store: Opener, tmp_path: Path
) -> None:
    source = open_store("source")
    source.claim_model_identity(IDENTITY)
    blobs = DirectoryBlobStore(tmp_path / "source-blobs")
    rng = np.random.default_rng(3)
    enroll(source, blobs, item_name(0), rng)
    enroll(source, blobs, item_name(1), rng)
    hashes = sorted(r.content_hash for r in source.iter_images())
    thumbnails = thumbnail_blobs(blobs)
    # Thumbnails made of two originals so far; an orphan one is no image's and is not copied.
    made = {h: f"thumbnail of {h}".encode() for h in hashes[:2]}
    for h, data in made.items():
        thumbnails.put(thumbnail_key(h), data)
    thumbnails.put(thumbnail_key("0" * 64), b"orphan")
    report = back_up(source, blobs, tmp_path / "backup")
    assert report.manifest.thumbnails_copied == 2 and report.manifest.blobs_copied == 4
    assert BackupManifest.read(tmp_path / "backup").thumbnails_copied == 2
    target_blobs = DirectoryBlobStore(tmp_path / "target-blobs")
    restore(tmp_path / "backup", open_store("target"), target_blobs)
    restored = thumbnail_blobs(target_blobs)
    assert {h: restored.get(h) for h in restored.iter_hashes()} == made
    assert sorted(target_blobs.iter_hashes()) == hashes  # originals apart from thumbnails
