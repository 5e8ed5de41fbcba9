"""The blob backend on an S3-compatible bucket (MinIO, AWS S3), through the ``minio`` client.

Why ``minio``: it is small (one pure-Python package over urllib3, which the service's
dependencies already bring), speaks plain S3 to MinIO and AWS alike, pages listings itself
(ListObjectsV2 continuation tokens), and takes a urllib3 pool whose timeouts bound every call;
boto3 would bring botocore's ~100 MB of service models for five S3 calls.

Layout: the blob of ``h`` is the object ``<prefix><h>``; the deletion hold is
``<prefix>.deletion-hold`` and each deletion it deferred an empty ``<prefix>.pending-deletes/<h>``
(a bucket has no append); a blob derived from the blob of ``h`` (a thumbnail) is
``<prefix><name>/<h>`` (``derived``). A PUT is atomic (a reader sees no object or all of it),
so there are no temporary objects; two concurrent puts of one key write the same bytes, so
either may win.

What the sweep's guarded removal cannot close here: S3 has no rename, so between the
LastModified read and the DELETE (one round trip) an enrollment that reuses the very same bytes
may touch the object and then commit, and lose its blob. The directory backend closes that by
renaming aside; a bucket would need conditional deletes, which neither MinIO nor AWS offer on
LastModified. The window is milliseconds once an hour per orphan whose bytes are re-sent at
that moment; ``centroid-retrieval restore``'s check (and a 503, never a 404, on download) shows
any such image.

Acquiring the deletion hold is not atomic against a second backup started at the same moment
(minio's client sends no ``If-None-Match`` on PUT): run one backup of a bucket at a time.
"""

from __future__ import annotations

import copy
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from store.blob_backend import (
    SHA256_HEX,
    BlobEntry,
    BlobUnavailableError,
    RemoveOutcome,
    check_derived_name,
    check_hash,
)
from store.blob_deletion_hold import DeletionHeldError, owner_is_stale, owner_record

if TYPE_CHECKING:
    from store.directory_blob_store import DirectoryBlobStore

T = TypeVar("T")

HOLD_NAME = ".deletion-hold"
PENDING_PREFIX = ".pending-deletes/"
DEFAULT_TIMEOUT_S = 1.0
# A bucket not created yet holds no object: reads answer "missing", the first write makes it.
_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound", "NoSuchBucket"})


class S3BlobStore:
    kind = "s3"

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        prefix: str = "",
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """``endpoint`` is a URL (``http://minio:9000``, ``https://s3.eu-west-1.amazonaws.com``);
        nothing is sent until the first call, so a service starts while the bucket is down."""
        import minio  # the serve-s3 extra: only a service on S3 needs it
        import urllib3

        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"S3 endpoint must be http(s)://host[:port], got {endpoint!r}")
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = prefix
        self.timeout_s = timeout_s
        # Neither a connect nor a read that fails is retried, so a bucket that does not answer
        # fails a call within about timeout_s; S3's 500/503 (InternalError, SlowDown: retry,
        # says S3) are, twice, since they answer at once. Every call sent is idempotent:
        # content-addressed PUTs, GET, HEAD, DELETE.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=urllib3.Retry(
                total=2,
                connect=0,
                read=0,
                status=2,
                status_forcelist=(500, 502, 503, 504),
                backoff_factor=0.05,
            ),
            maxsize=16,
        )
        self._client = minio.Minio(
            parts.netloc,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=parts.scheme == "https",
            region=region or None,
            http_client=http,
        )
        # True for a derived view (:meth:`derived`): keys name a source blob, not the bytes.
        self.keyed_by_source = False
        self.deletion_hold = S3DeletionHold(self)

    def derived(self, name: str) -> S3BlobStore:
        """Blobs made from these (``BlobBackend.derived``) under ``<prefix><name>/``: this
        store lists them (its prefix covers them) but skips them, their names holding a
        ``/``. The same client and the same deletion hold."""
        check_derived_name(name)
        view = copy.copy(self)
        view.prefix = f"{self.prefix}{name}/"
        view.keyed_by_source = True
        return view

    def describe(self) -> str:
        return f"the S3 bucket {self.bucket!r} (prefix {self.prefix!r}) at {self.endpoint}"

    def key_for(self, content_hash: str) -> str:
        check_hash(content_hash)
        return self.prefix + content_hash

    # -- the interface ------------------------------------------------------------------------

    def put(self, content_hash: str, data: bytes) -> bool:
        key = self.key_for(content_hash)
        if not self.keyed_by_source and hashlib.sha256(data).hexdigest() != content_hash:
            raise ValueError(f"data does not hash to {content_hash}")
        if self.modified(key) is not None and self._touch(key):
            return False
        self.write_object(key, data)
        return True

    def get(self, content_hash: str) -> bytes | None:
        return self.read_object(self.key_for(content_hash))

    def exists(self, content_hash: str) -> bool:
        return self.modified(self.key_for(content_hash)) is not None

    def delete(self, content_hash: str) -> bool:
        key = self.key_for(content_hash)
        if self.modified(key) is None:
            return False
        if self.deletion_hold.is_held():
            self.deletion_hold.defer(content_hash)
        else:
            self.remove_object(key)
        return True

    def iter_hashes(self) -> Iterator[str]:
        for entry in self.iter_entries():
            if entry.content_hash is not None:
                yield entry.content_hash

    def count(self) -> int:
        return sum(1 for _ in self.iter_hashes())

    def count_dirs(self) -> int:
        return 0

    def iter_entries(self) -> Iterator[BlobEntry]:
        """Only blobs: a PUT leaves no temporary object behind."""
        for key, modified in self.list_keys(self.prefix):
            name = key.removeprefix(self.prefix)
            if SHA256_HEX.fullmatch(name):
                yield BlobEntry(name, name, modified)

    def remove_temporary(self, entry: BlobEntry) -> bool:
        raise ValueError(f"a bucket has no temporary objects: {entry.name!r}")

    def remove_if(
        self, content_hash: str, keep: Callable[[float], RemoveOutcome | None]
    ) -> RemoveOutcome:
        key = self.key_for(content_hash)
        modified = self.modified(key)
        if modified is None:
            return "absent"
        reason = keep(modified)
        if reason is not None:
            return reason
        self.remove_object(key)
        return "removed"

    def copy_into(self, content_hash: str, target: DirectoryBlobStore) -> bool:
        data = self.get(content_hash)
        if data is None:
            return False
        try:
            target.put(content_hash, data)
        except ValueError:
            return False  # the object's bytes no longer match its name: as good as missing
        return True

    # -- object calls (the deletion hold uses them too) ---------------------------------------

    def modified(self, key: str) -> float | None:
        """The object's LastModified (Unix seconds), None if there is none."""

        def stat() -> float | None:
            last: datetime | None = self._client.stat_object(self.bucket, key).last_modified
            return time.time() if last is None else last.timestamp()

        return self._call(stat, missing=None)

    def read_object(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            response = self._client.get_object(self.bucket, key)
            try:
                data: bytes = response.read()
                return data
            finally:
                response.close()
                response.release_conn()

        return self._call(read, missing=None)

    def write_object(self, key: str, data: bytes) -> None:
        def write() -> None:
            self._client.put_object(self.bucket, key, io.BytesIO(data), len(data))

        try:
            self._call(write)
        except BlobUnavailableError as exc:
            if _code(exc.__cause__) != "NoSuchBucket":
                raise
            # First write to a new bucket: create it (another replica may be doing the same).
            self._call(self._make_bucket)
            self._call(write)

    def remove_object(self, key: str) -> None:
        self._call(lambda: self._client.remove_object(self.bucket, key))

    def list_keys(self, prefix: str) -> Iterator[tuple[str, float]]:
        """(key, LastModified) of every object under ``prefix``, paged by the client
        (ListObjectsV2, 1000 keys a page, continuation tokens)."""
        try:
            with self._unavailable():
                for obj in self._client.list_objects(self.bucket, prefix=prefix, recursive=True):
                    if obj.object_name is None or obj.is_dir:
                        continue
                    last = obj.last_modified
                    yield obj.object_name, (time.time() if last is None else last.timestamp())
        except BlobUnavailableError as exc:
            if _code(exc.__cause__) not in _MISSING:
                raise

    def _touch(self, key: str) -> bool:
        """Set the object's LastModified to now by copying it onto itself with new metadata
        (S3 refuses a self-copy that changes nothing); False if it vanished meanwhile (a
        concurrent delete), so the caller writes it anew."""
        from minio.commonconfig import REPLACE, CopySource

        def copy() -> bool:
            self._client.copy_object(
                self.bucket,
                key,
                CopySource(self.bucket, key),
                metadata={"x-amz-meta-touched": f"{time.time():.6f}"},
                metadata_directive=REPLACE,
            )
            return True

        return self._call(copy, missing=False)

    def _make_bucket(self) -> None:
        from minio.error import S3Error

        try:
            self._client.make_bucket(self.bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def _call(self, fn: Callable[[], T], *, missing: Any = ...) -> T:
        """``fn()``, with every client or network failure as ``BlobUnavailableError``; with
        ``missing``, a missing object answers that instead."""
        from minio.error import S3Error

        try:
            with self._unavailable():
                return fn()
        except BlobUnavailableError as exc:
            cause = exc.__cause__
            if missing is not ... and isinstance(cause, S3Error) and cause.code in _MISSING:
                result: T = missing
                return result
            raise

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        import urllib3
        from minio.error import MinioException

        try:
            yield
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise BlobUnavailableError(f"{self.describe()}: {type(exc).__name__}: {exc}") from exc


class S3DeletionHold:
    """The deletion hold as objects of the bucket, so the service's replicas and a backup run
    beside them see the same hold (see the module's note on concurrent backups)."""

    def __init__(self, blobs: S3BlobStore) -> None:
        self._blobs = blobs
        self.hold_key = blobs.prefix + HOLD_NAME
        self.pending_prefix = blobs.prefix + PENDING_PREFIX

    def is_held(self) -> bool:
        return self._blobs.modified(self.hold_key) is not None

    def acquire(self) -> None:
        raw = self._blobs.read_object(self.hold_key)
        if raw is not None and not owner_is_stale(raw.decode(errors="replace")):
            raise DeletionHeldError(
                f"{self._blobs.describe()} holds {HOLD_NAME}: another backup is running "
                f"({raw.decode(errors='replace')})"
            )
        self._blobs.write_object(self.hold_key, owner_record())

    def defer(self, content_hash: str) -> None:
        check_hash(content_hash)
        self._blobs.write_object(self.pending_prefix + content_hash, b"")

    def release(self) -> list[str]:
        """The hold goes first, then the queue is listed: a deletion queued between the two is
        still listed."""
        self._blobs.remove_object(self.hold_key)
        pending = [key for key, _ in self._blobs.list_keys(self.pending_prefix)]
        hashes = []
        for key in pending:
            hashes.append(key.removeprefix(self.pending_prefix))
            self._blobs.remove_object(key)
        return list(dict.fromkeys(h for h in hashes if SHA256_HEX.fullmatch(h)))


def _code(exc: BaseException | None) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None
