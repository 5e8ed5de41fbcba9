"""DirectoryBlobStore on real photo bytes: layout, idempotent put, hash check, delete, count;
emptied directories pruned, racing puts and deletes in one directory, the deletion hold."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from store.blob_deletion_hold import DeletionHeldError
from store.directory_blob_store import DirectoryBlobStore
from tests.store.blob_backend_congruence import BlobBackendCongruence, MakeBlobs


def png(array: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [png(data.chelsea()), png(data.coffee()), png(data.camera())]


def test_put_get_delete_round_trip(tmp_path: Path, photos: list[bytes]) -> None:
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    hashes = [hashlib.sha256(p).hexdigest() for p in photos]
    assert [blobs.put(h, p) for h, p in zip(hashes, photos, strict=True)] == [True] * 3
    assert blobs.put(hashes[0], photos[0]) is False
    assert blobs.count() == 3
    h = hashes[1]
    assert blobs.path_for(h) == tmp_path / "blobs" / h[:2] / h[2:4] / h
    assert blobs.get(h) == photos[1] and blobs.exists(h)
    assert blobs.delete(h) is True and blobs.delete(h) is False
    assert blobs.get(h) is None and not blobs.exists(h)
    assert blobs.count() == 2
    leftovers = [p for p in (tmp_path / "blobs").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    assert DirectoryBlobStore(tmp_path / "blobs").get(hashes[2]) == photos[2]


def test_rejects_bad_hashes_and_mismatched_bytes(tmp_path: Path, photos: list[bytes]) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    with pytest.raises(ValueError):
        blobs.put(hashlib.sha256(photos[0]).hexdigest(), photos[1])
    with pytest.raises(ValueError):
        blobs.get("../../etc/passwd")
    with pytest.raises(ValueError):
        blobs.exists(hashlib.sha256(b"x").hexdigest().upper())
    assert blobs.count() == 0


def test_delete_removes_the_emptied_directories_and_only_those(
    tmp_path: Path, photos: list[bytes]
) -> None:
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    hashes = [hashlib.sha256(p).hexdigest() for p in photos]
    for h, p in zip(hashes, photos, strict=True):
        blobs.put(h, p)
    assert blobs.count_dirs() == 6  # three distinct ab/cd pairs (checked below)
    assert len({h[:4] for h in hashes}) == 3 and len({h[:2] for h in hashes}) == 3
    blobs.delete(hashes[0])
    assert not (tmp_path / "blobs" / hashes[0][:2]).exists()
    assert blobs.count_dirs() == 4 and blobs.get(hashes[1]) == photos[1]
    for h in hashes[1:]:
        blobs.delete(h)
    assert list((tmp_path / "blobs").iterdir()) == []
    assert blobs.put(hashes[2], photos[2]) is True  # the directories come back on demand
    assert blobs.get(hashes[2]) == photos[2]


def _same_leaf_hashes(n: int, leaf: str = "ab00") -> list[tuple[str, bytes]]:
    """``n`` (hash, bytes) whose blobs share one ``ab/cd`` directory (found by brute force)."""
    out: list[tuple[str, bytes]] = []
    i = 0
    while len(out) < n:
        data = f"blob-{i}".encode()
        h = hashlib.sha256(data).hexdigest()
        if h.startswith(leaf):
            out.append((h, data))
        i += 1
    return out


def test_put_and_delete_racing_in_one_directory_lose_nothing(tmp_path: Path) -> None:
    # One thread keeps putting and deleting blob A, the other blob B, in the same ab/cd: every
    # delete of one may prune the directory the other is about to write into. A put that
    # returned must leave its blob readable, whatever the other thread did meanwhile.
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    (a, data_a), (b, data_b) = _same_leaf_hashes(2)
    assert blobs.path_for(a).parent == blobs.path_for(b).parent
    rounds = 500
    errors: list[str] = []

    def churn(h: str, data: bytes) -> None:
        for i in range(rounds):
            try:
                written = blobs.put(h, data)
                readable = blobs.get(h) == data
                deleted = blobs.delete(h)
            except OSError as exc:
                errors.append(f"{h[:8]} round {i}: {exc!r}")
                return
            if not (written and readable and deleted):
                errors.append(f"{h[:8]} round {i}: {written=} {readable=} {deleted=}")

    threads = [threading.Thread(target=churn, args=pair) for pair in ((a, data_a), (b, data_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list((tmp_path / "blobs").iterdir()) == []


def test_putting_bytes_already_kept_touches_them(tmp_path: Path, photos: list[bytes]) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    h = hashlib.sha256(photos[0]).hexdigest()
    blobs.put(h, photos[0])
    os.utime(blobs.path_for(h), (1_000_000, 1_000_000))
    assert blobs.put(h, photos[0]) is False
    assert blobs.path_for(h).stat().st_mtime > time.time() - 60


def test_deletions_are_queued_while_held_and_handed_back_on_release(
    tmp_path: Path, photos: list[bytes]
) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    hashes = [hashlib.sha256(p).hexdigest() for p in photos]
    for h, p in zip(hashes, photos, strict=True):
        blobs.put(h, p)
    blobs.deletion_hold.acquire()
    with pytest.raises(DeletionHeldError, match="another backup"):
        DirectoryBlobStore(tmp_path).deletion_hold.acquire()
    assert blobs.delete(hashes[0]) is True and blobs.delete(hashes[0]) is True
    assert blobs.delete(hashlib.sha256(b"never kept").hexdigest()) is False
    assert blobs.count() == 3  # nothing removed while held
    assert blobs.deletion_hold.release() == [hashes[0]]
    assert not blobs.deletion_hold.is_held() and blobs.deletion_hold.release() == []
    assert blobs.delete(hashes[1]) is True and not blobs.exists(hashes[1])


def test_a_hold_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    blobs = DirectoryBlobStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    blobs.deletion_hold.hold_path.write_text(
        json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)})
    )
    assert blobs.deletion_hold.is_stale()
    blobs.deletion_hold.acquire()
    assert json.loads(blobs.deletion_hold.holder())["pid"] == os.getpid()
    blobs.deletion_hold.release()


class TestDirectoryBlobStoreCongruence(BlobBackendCongruence):
    modified_resolution_s = 0.05  # mtimes have nanoseconds here

    @pytest.fixture
    def make_blobs(self, tmp_path: Path) -> MakeBlobs:
        roots = iter(range(1000))
        return lambda: DirectoryBlobStore(tmp_path / f"blobs-{next(roots)}")
