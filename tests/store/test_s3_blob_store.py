"""S3BlobStore against a real S3 HTTP server (moto's, in a subprocess): the blob congruence
suite, then what only a bucket has: prefixes sharing a bucket, a bucket created on the first
write, listings past one page, an outage that every call reports as BlobUnavailableError within
its timeout, and a backup that copies from the bucket (restored into another)."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from store.backup_manifest import BLOBS_NAME
from store.blob_backend import BlobUnavailableError
from store.directory_blob_store import DirectoryBlobStore
from store.records import ModelIdentity, NewImage
from store.s3_blob_store import S3BlobStore
from store.sqlite_store import SqliteStore
from store.store_backup import back_up
from store.store_restore import restore
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.store.blob_backend_congruence import BlobBackendCongruence, MakeBlobs, blob

# moto's server answers a burst of concurrent 50 KB puts in over a second on 2 cores.
TIMEOUT_S = 5.0
# The outage tests' bound: nothing answers there, so a short timeout shows it is honoured.
OUTAGE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


def s3_blobs(
    server: S3Server,
    *,
    bucket: str | None = None,
    prefix: str = "",
    timeout_s: float = TIMEOUT_S,
) -> S3BlobStore:
    return S3BlobStore(
        server.endpoint,
        bucket or f"b-{uuid.uuid4().hex[:20]}",
        prefix=prefix,
        region=REGION,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        timeout_s=timeout_s,
    )


class TestS3BlobStoreCongruence(BlobBackendCongruence):
    @pytest.fixture
    def make_blobs(self, s3: S3Server) -> MakeBlobs:
        # A fresh bucket each, under a prefix: the prefix is part of every key.
        return lambda: s3_blobs(s3, prefix="originals/")


def test_prefixes_share_a_bucket_without_seeing_each_other(s3: S3Server) -> None:
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    a, b = s3_blobs(s3, bucket=bucket, prefix="a/"), s3_blobs(s3, bucket=bucket, prefix="b/")
    h, data = blob("one")
    assert a.put(h, data) is True
    assert b.get(h) is None and b.count() == 0 and list(b.iter_entries()) == []
    assert b.put(h, data) is True  # its own copy, under its own prefix
    a.deletion_hold.acquire()
    try:
        assert not b.deletion_hold.is_held()  # each prefix has its own hold
    finally:
        a.deletion_hold.release()
    assert a.delete(h) and b.get(h) == data


def test_the_bucket_is_created_by_the_first_write(s3: S3Server) -> None:
    blobs = s3_blobs(s3)
    h, data = blob("first")
    # Reads of a bucket that does not exist yet: nothing there, not an outage.
    assert blobs.get(h) is None and not blobs.exists(h) and blobs.count() == 0
    assert blobs.put(h, data) is True and blobs.get(h) == data


def test_listing_pages_past_a_thousand_keys() -> None:
    # ListObjectsV2 answers at most 1000 keys a page; the sweep and backups need them all.
    # 1003 PUTs over HTTP take seconds on moto, so this one server runs in-process and its
    # storage is seeded directly; the listing itself goes over HTTP like every other call.
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        bucket = f"paged-{uuid.uuid4().hex[:12]}"
        storage = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        storage.create_bucket(bucket, REGION)
        hashes = set()
        for i in range(1003):
            data = i.to_bytes(4, "big")
            h = hashlib.sha256(data).hexdigest()
            storage.put_object(bucket, "p/" + h, data)
            hashes.add(h)
        storage.put_object(bucket, "other/" + h, data)  # another prefix: not listed
        blobs = S3BlobStore(
            f"http://{host}:{port}", bucket, prefix="p/", region=REGION,
            access_key=ACCESS_KEY, secret_key=SECRET_KEY,
            # Not a timeout test: the in-process server shares this process's GIL, and a page
            # of 1000 keys has taken over the 1 s default on the loaded machine.
            timeout_s=30.0,
        )  # fmt: skip
        assert set(blobs.iter_hashes()) == hashes and blobs.count() == 1003
        assert blobs.get(h) == data
    finally:
        server.stop()


def test_an_outage_is_blob_unavailable_within_the_timeout_on_every_call(s3: S3Server) -> None:
    # The module's server, stopped and started again (empty) here: one moto start-up fewer
    # than a server of its own; the tests after this one make buckets of their own anyway.
    server = s3
    blobs = s3_blobs(server, timeout_s=OUTAGE_TIMEOUT_S)
    h, data = blob("outage")
    blobs.put(h, data)
    server.stop()
    try:
        calls = {
            "get": lambda: blobs.get(h),
            "exists": lambda: blobs.exists(h),
            "put": lambda: blobs.put(*blob("new")),
            "delete": lambda: blobs.delete(h),
            "count": blobs.count,
            "entries": lambda: list(blobs.iter_entries()),
            "remove_if": lambda: blobs.remove_if(h, lambda _: None),
            "hold": blobs.deletion_hold.is_held,
        }
        for name, call in calls.items():
            start = time.monotonic()
            with pytest.raises(BlobUnavailableError) as caught:
                call()
            # A refused connection fails at once; the bound is the timeout's, connect and read.
            assert time.monotonic() - start < 2 * OUTAGE_TIMEOUT_S + 1, name
            message = str(caught.value)
            assert SECRET_KEY not in message and ACCESS_KEY not in message, name
            assert "see the service log" in caught.value.public_detail
    finally:
        server.start()  # whatever happened: the tests after this one need it
    # Back (empty: moto keeps its objects in memory): the same client serves again.
    assert blobs.get(h) is None and blobs.put(h, data) is True


def test_a_server_that_accepts_but_never_answers_times_out() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # connections are accepted by the kernel, never answered
    try:
        port = listener.getsockname()[1]
        blobs = S3BlobStore(f"http://127.0.0.1:{port}", "stalled", region=REGION, timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(BlobUnavailableError):
            blobs.get(blob("x")[0])
        assert time.monotonic() - start < 2 * 0.5 + 1
    finally:
        listener.close()


def test_settings_and_endpoints_are_checked() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        S3BlobStore("minio:9000", "b")
    with pytest.raises(ValueError, match="endpoint"):
        S3BlobStore("http://minio:9000/path", "b")
    blobs = S3BlobStore("https://s3.example.test", "b", prefix="p/", secret_key="s" * 20)
    assert "s" * 20 not in blobs.describe() and "'b'" in blobs.describe()


def test_backup_copies_from_the_bucket_and_restore_fills_another(
    s3: S3Server, tmp_path: Path
) -> None:
    source_store = SqliteStore(tmp_path / "source.sqlite3")
    source_store.claim_model_identity(ModelIdentity("m", "1", 4))
    source = s3_blobs(s3)
    kept = dict(blob(f"kept-{i}") for i in range(3))
    for i, (h, data) in enumerate(kept.items()):
        source.put(h, data)
        source_store.enroll(f"item-{i}", [NewImage(h, np.full(4, i + 1, dtype=np.float32))])
    lost_h, lost = blob("lost")
    source.put(lost_h, lost)
    source_store.enroll("lost", [NewImage(lost_h, np.ones(4, dtype=np.float32))])
    source.remove_object(source.key_for(lost_h))  # referenced, but gone from the bucket

    report = back_up(source_store, source, tmp_path / "backup")
    assert report.manifest.blobs_copied == 3 and report.manifest.missing_blobs == [lost_h]
    assert not source.deletion_hold.is_held()  # taken and let go around the copy
    copied = DirectoryBlobStore(tmp_path / "backup" / BLOBS_NAME)
    assert {h: copied.get(h) for h in copied.iter_hashes()} == kept

    target = s3_blobs(s3)
    restored = restore(tmp_path / "backup", SqliteStore(tmp_path / "target.sqlite3"), target)
    assert restored.blobs_restored == 3 and restored.missing_blobs == [lost_h]
    assert {h: target.get(h) for h in target.iter_hashes()} == kept
    source_store.close()
