"""The sweep on a real blob directory and a real store (both backends): orphans and crash
leftovers older than the grace period go, referenced blobs and young files stay."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from cli.maintenance_commands import DEFAULT_GRACE_S
from store.blob_sweep import BLOB_SWEEP_GRACE_S, remove_unreferenced, sweep_blobs
from store.directory_blob_store import ASIDE_PREFIX, DirectoryBlobStore
from store.records import ModelIdentity, NewImage
from store.store import Store

DIM = 4
OLD = 2 * BLOB_SWEEP_GRACE_S  # seconds ago: past the grace period


def kept(blobs: DirectoryBlobStore, tag: str, *, age_s: float = OLD) -> str:
    data = f"bytes of {tag}".encode()
    h = hashlib.sha256(data).hexdigest()
    blobs.put(h, data)
    _age(blobs.path_for(h), age_s)
    return h


def _age(path: Path, age_s: float) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime - age_s, stat.st_mtime - age_s))


def enroll(store: Store, item_id: str, *hashes: str) -> None:
    store.enroll(item_id, [NewImage(h, np.ones(DIM, np.float32)) for h in hashes])


def test_the_sweep_removes_old_orphans_and_temporary_files_only(
    store: Store, tmp_path: Path
) -> None:
    store.claim_model_identity(ModelIdentity("m", "1", DIM))
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    referenced = kept(blobs, "referenced")
    enroll(store, "cat", referenced)
    orphan = kept(blobs, "orphan")
    young_orphan = kept(blobs, "young orphan", age_s=10)
    leaf = blobs.path_for(referenced).parent
    old_tmp, young_tmp = leaf / ".tmp-crashed", leaf / ".tmp-in-flight"
    for path, age in ((old_tmp, OLD), (young_tmp, 10.0)):
        path.write_bytes(b"partial")
        _age(path, age)
    stray = leaf / "notes.txt"
    stray.write_text("not a blob")
    _age(stray, OLD)

    report = sweep_blobs(blobs, store)

    assert (report.orphans_removed, report.temporary_removed, report.kept_recent) == (1, 1, 2)
    assert not report.held and "1 orphan blobs" in report.line()
    assert not blobs.exists(orphan) and not blobs.path_for(orphan).parent.parent.exists()
    assert blobs.exists(referenced) and blobs.exists(young_orphan)
    assert not old_tmp.exists() and young_tmp.exists() and stray.exists()
    assert sweep_blobs(blobs, store, grace_s=0).orphans_removed == 1  # now the young one too
    assert not blobs.exists(young_orphan) and blobs.exists(referenced)


def test_an_enrollment_reusing_an_orphan_keeps_it(store: Store, tmp_path: Path) -> None:
    # The bytes were orphaned long ago; an enrollment in flight puts them again (touching the
    # blob) and has not committed yet when the sweep runs.
    store.claim_model_identity(ModelIdentity("m", "1", DIM))
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    h = kept(blobs, "orphan about to be reused")
    assert blobs.put(h, b"bytes of orphan about to be reused") is False
    assert sweep_blobs(blobs, store).orphans_removed == 0 and blobs.exists(h)
    enroll(store, "cat", h)
    _age(blobs.path_for(h), OLD)
    assert sweep_blobs(blobs, store).orphans_removed == 0 and blobs.exists(h)


def test_nothing_is_removed_while_a_backup_holds_deletions(store: Store, tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    orphan = kept(blobs, "orphan")
    blobs.deletion_hold.acquire()
    report = sweep_blobs(blobs, store)
    assert report.held and report.orphans_removed == 0 and blobs.exists(orphan)
    blobs.deletion_hold.release()
    assert sweep_blobs(blobs, store).orphans_removed == 1


def test_a_blob_left_aside_by_a_crashed_sweep_is_judged_again(store: Store, tmp_path: Path) -> None:
    store.claim_model_identity(ModelIdentity("m", "1", DIM))
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    referenced, orphan = kept(blobs, "referenced"), kept(blobs, "orphan")
    enroll(store, "cat", referenced)
    for h in (referenced, orphan):
        path = blobs.path_for(h)
        path.rename(path.with_name(ASIDE_PREFIX + h))
    assert sweep_blobs(blobs, store).orphans_removed == 1
    assert blobs.exists(referenced) and not blobs.exists(orphan)
    assert [p.name for p in blobs.iter_files()] == [referenced]


def test_deferred_deletions_remove_only_unreferenced_old_blobs(
    store: Store, tmp_path: Path
) -> None:
    store.claim_model_identity(ModelIdentity("m", "1", DIM))
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    referenced, orphan, young = kept(blobs, "ref"), kept(blobs, "orphan"), kept(blobs, "y", age_s=1)
    enroll(store, "cat", referenced)
    gone = hashlib.sha256(b"never kept").hexdigest()
    assert remove_unreferenced(blobs, store, [referenced, orphan, young, gone]) == 1
    assert blobs.exists(referenced) and blobs.exists(young) and not blobs.exists(orphan)


def test_the_command_default_grace_is_the_sweeps() -> None:
    assert DEFAULT_GRACE_S == BLOB_SWEEP_GRACE_S
