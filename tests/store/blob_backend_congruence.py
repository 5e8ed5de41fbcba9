"""The BlobBackend contract, for every implementation (store/blob_backend.py).

Subclass ``BlobBackendCongruence`` in a ``test_*.py`` module as ``Test<Impl>Congruence`` and
give it a ``make_blobs`` fixture returning a callable ``() -> BlobBackend`` (a fresh, empty
backend each call, on the real thing: a directory, a real S3 HTTP server). The base class has
no ``Test`` prefix, so pytest collects it only through its subclasses.

Modified times: S3's LastModified has one-second resolution, so the sweep's grace period is
exercised with a grace far above the test's age (kept) and a negative one (a cutoff in the
future: every blob counts as old), and a touch is checked across a wait of just over a second.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from store.blob_backend import BlobBackend
from store.blob_deletion_hold import DeletionHeldError
from store.blob_sweep import remove_unreferenced, sweep_blobs
from store.directory_blob_store import DirectoryBlobStore
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SqliteStore

MakeBlobs = Callable[[], BlobBackend]


def blob(tag: str, size: int = 3000) -> tuple[str, bytes]:
    """Deterministic bytes for ``tag`` and their sha256 hex."""
    data = np.random.default_rng(list(tag.encode())).bytes(size)
    return hashlib.sha256(data).hexdigest(), data


def modified(blobs: BlobBackend, content_hash: str) -> float:
    (entry,) = [e for e in blobs.iter_entries() if e.content_hash == content_hash]
    return entry.modified


class BlobBackendCongruence:
    """Contract tests; subclasses provide ``make_blobs`` (see the module docstring)."""

    # Seconds between two writes for their modified times to differ (S3: whole seconds).
    modified_resolution_s = 1.1

    # -- put, get, exists, delete ---------------------------------------------------------

    def test_round_trip(self, make_blobs: MakeBlobs) -> None:
        blobs = make_blobs()
        stored = dict(blob(f"b{i}", 100 + 997 * i) for i in range(5))
        for h, data in stored.items():
            assert not blobs.exists(h) and blobs.get(h) is None
            assert blobs.put(h, data) is True
        for h, data in stored.items():
            assert blobs.exists(h) and blobs.get(h) == data
        assert blobs.count() == 5 and set(blobs.iter_hashes()) == set(stored)
        gone = next(iter(stored))
        assert blobs.delete(gone) is True
        assert not blobs.exists(gone) and blobs.get(gone) is None
        assert blobs.delete(gone) is False  # deleting twice: nothing there the second time
        assert set(blobs.iter_hashes()) == set(stored) - {gone}

    def test_put_is_idempotent(self, make_blobs: MakeBlobs) -> None:
        blobs = make_blobs()
        h, data = blob("same")
        assert blobs.put(h, data) is True
        assert blobs.put(h, data) is False  # already there: nothing written
        assert blobs.get(h) == data and blobs.count() == 1

    def test_a_blob_whose_bytes_do_not_hash_to_its_name_is_refused(
        self, make_blobs: MakeBlobs
    ) -> None:
        blobs = make_blobs()
        h, data = blob("right")
        with pytest.raises(ValueError, match="does not hash"):
            blobs.put(h, data + b"x")
        assert not blobs.exists(h) and blobs.count() == 0
        for bad in ("", "ABC", h.upper(), h[:-1], h + "0", "../" + h[3:]):
            with pytest.raises(ValueError):
                blobs.put(bad, data)
            with pytest.raises(ValueError):
                blobs.get(bad)
            with pytest.raises(ValueError):
                blobs.exists(bad)
            with pytest.raises(ValueError):
                blobs.delete(bad)

    def test_missing_blob_is_none_not_an_error(self, make_blobs: MakeBlobs, tmp_path: Path) -> None:
        blobs = make_blobs()
        h, _ = blob("never")
        assert blobs.get(h) is None and not blobs.exists(h) and not blobs.delete(h)
        assert blobs.count() == 0 and list(blobs.iter_entries()) == []
        assert blobs.copy_into(h, DirectoryBlobStore(tmp_path / "copy")) is False

    def test_a_put_of_kept_bytes_touches_them(self, make_blobs: MakeBlobs) -> None:
        # The sweep's protection of an enrollment in flight that reuses kept bytes.
        blobs = make_blobs()
        h, data = blob("touched")
        blobs.put(h, data)
        before = modified(blobs, h)
        time.sleep(self.modified_resolution_s)
        assert blobs.put(h, data) is False
        assert modified(blobs, h) > before

    # -- concurrency ----------------------------------------------------------------------

    def test_concurrent_puts_of_the_same_bytes(self, make_blobs: MakeBlobs) -> None:
        blobs = make_blobs()
        h, data = blob("racing", 50_000)
        results: list[bool] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def put() -> None:
            start.wait()
            try:
                results.append(blobs.put(h, data))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=put) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(results) == 8, errors
        assert any(results)  # somebody wrote it
        assert blobs.get(h) == data and blobs.count() == 1

    def test_concurrent_put_and_delete_of_one_hash(self, make_blobs: MakeBlobs) -> None:
        blobs = make_blobs()
        h, data = blob("put-and-delete", 2000)
        errors: list[BaseException] = []
        rounds = 30

        def run(fn: Callable[[], object]) -> None:
            try:
                for _ in range(rounds):
                    fn()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(lambda: blobs.put(h, data),)),
            threading.Thread(target=run, args=(lambda: blobs.delete(h),)),
            threading.Thread(target=run, args=(lambda: blobs.get(h),)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # Whatever order they ran in: the blob is whole or absent, never torn.
        got = blobs.get(h)
        assert got in (None, data) and blobs.exists(h) == (got is not None)
        # And a put after the race always leaves it there.
        blobs.put(h, data)
        assert blobs.get(h) == data

    # -- the sweep and backups ------------------------------------------------------------

    def test_sweep_removes_old_orphans_only(self, make_blobs: MakeBlobs, tmp_path: Path) -> None:
        blobs = make_blobs()
        store = _store(tmp_path)
        kept_h, kept = blob("referenced")
        orphan_h, orphan = blob("orphan")
        blobs.put(kept_h, kept)
        blobs.put(orphan_h, orphan)
        store.enroll("item", [NewImage(kept_h, np.ones(4, dtype=np.float32))])
        # Young: an orphan within the grace period may be an enrollment in flight.
        report = sweep_blobs(blobs, store, grace_s=3600)
        assert (report.orphans_removed, report.kept_recent, report.held) == (0, 1, False)
        assert blobs.exists(orphan_h)
        # A cutoff in the future: every blob is old; only the unreferenced one goes.
        report = sweep_blobs(blobs, store, grace_s=-5)
        assert report.orphans_removed == 1
        assert not blobs.exists(orphan_h) and blobs.get(kept_h) == kept
        # Deferred deletions are re-checked the same way.
        blobs.put(orphan_h, orphan)
        assert remove_unreferenced(blobs, store, [orphan_h, kept_h], grace_s=3600) == 0
        assert remove_unreferenced(blobs, store, [orphan_h, kept_h], grace_s=-5) == 1
        assert set(blobs.iter_hashes()) == {kept_h}
        store.close()

    def test_guarded_removal_asks_at_removal_time(self, make_blobs: MakeBlobs) -> None:
        blobs = make_blobs()
        h, data = blob("guarded")
        blobs.put(h, data)
        seen: list[float] = []

        def keep_it(mtime: float) -> str:
            seen.append(mtime)
            return "recent"

        assert blobs.remove_if(h, keep_it) == "recent"  # type: ignore[arg-type]
        assert blobs.exists(h) and abs(seen[0] - time.time()) < 60
        assert blobs.remove_if(h, lambda _: None) == "removed"
        assert not blobs.exists(h)
        assert blobs.remove_if(h, lambda _: None) == "absent"

    def test_deletion_hold_defers_deletes_until_released(
        self, make_blobs: MakeBlobs, tmp_path: Path
    ) -> None:
        blobs = make_blobs()
        h, data = blob("held")
        other_h, other = blob("not-held")
        blobs.put(h, data)
        blobs.put(other_h, other)
        blobs.deletion_hold.acquire()
        try:
            assert blobs.deletion_hold.is_held()
            # A second backup while this one runs is refused (this process is alive).
            with pytest.raises(DeletionHeldError):
                blobs.deletion_hold.acquire()
            assert blobs.delete(h) is True  # queued, not removed
            assert blobs.get(h) == data
            report = sweep_blobs(blobs, _store(tmp_path), grace_s=-5)
            assert report.held and blobs.exists(other_h)  # nothing is swept meanwhile
        finally:
            deferred = blobs.deletion_hold.release()
        assert deferred == [h] and not blobs.deletion_hold.is_held()
        assert set(blobs.iter_hashes()) == {h, other_h}  # the holder applies the queue
        assert blobs.delete(h) is True and not blobs.exists(h)

    def test_copy_into_a_backup_directory(self, make_blobs: MakeBlobs, tmp_path: Path) -> None:
        blobs = make_blobs()
        stored = dict(blob(f"c{i}") for i in range(3))
        for h, data in stored.items():
            blobs.put(h, data)
        target = DirectoryBlobStore(tmp_path / "backup-blobs")
        for h in stored:
            assert blobs.copy_into(h, target) is True
        target.fsync_dirs()
        assert {h: target.get(h) for h in target.iter_hashes()} == stored

    # -- derived blobs (thumbnails) ------------------------------------------------------

    def test_a_derived_namespace_is_keyed_by_source_and_apart(
        self, make_blobs: MakeBlobs, tmp_path: Path
    ) -> None:
        blobs = make_blobs()
        derived = blobs.derived("thumbnails")
        source_h, source = blob("original")
        made = b"made from the original: not its bytes"
        blobs.put(source_h, source)
        assert derived.get(source_h) is None and not derived.exists(source_h)
        # Keyed by its source's hash, whatever its own bytes hash to; keys still checked.
        assert derived.put(source_h, made) is True and derived.get(source_h) == made
        with pytest.raises(ValueError):
            derived.put("../" + source_h[3:], made)
        # Neither namespace lists the other's blobs.
        assert set(blobs.iter_hashes()) == {source_h} and blobs.count() == 1
        assert [e.content_hash for e in blobs.iter_entries()] == [source_h]
        assert [e.content_hash for e in derived.iter_entries()] == [source_h]
        assert blobs.get(source_h) == source and blobs.derived("other").count() == 0
        for bad in ("ab", "0f", ".pending-deletes", "Thumbs", "a/b", ""):
            with pytest.raises(ValueError):
                blobs.derived(bad)
        # One deletion hold: a backup holds the derived deletes too.
        blobs.deletion_hold.acquire()
        try:
            assert derived.deletion_hold.is_held()
            assert derived.delete(source_h) is True and derived.get(source_h) == made
        finally:
            deferred = blobs.deletion_hold.release()
        assert deferred == [source_h]
        # The sweep reaches it: an orphan once its source's hash is unreferenced.
        store = _store(tmp_path)
        report = sweep_blobs(blobs, store, grace_s=-5)
        assert (report.orphans_removed, report.thumbnails_removed) == (1, 1)
        assert blobs.count() == 0 and derived.count() == 0
        # Copied into a backup's own derived directory.
        derived.put(source_h, made)
        target = DirectoryBlobStore(tmp_path / "backup-blobs").derived("thumbnails")
        assert derived.copy_into(source_h, target) is True and target.get(source_h) == made
        store.close()


def _store(directory: Path) -> SqliteStore:
    """A real store the sweep asks whether a hash is referenced."""
    store = SqliteStore(directory / f"store-{time.monotonic_ns()}.sqlite3")
    store.claim_model_identity(ModelIdentity("m", "1", 4))
    return store
