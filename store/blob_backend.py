"""Where kept originals live: the blob backend interface, shared by every replica.

Two implementations pass the same congruence tests (tests/store/blob_backend_congruence.py):
``DirectoryBlobStore`` (a directory: local, or a volume every replica mounts — a compose named
volume, a Kubernetes ReadWriteMany claim) and ``S3BlobStore`` (an S3-compatible bucket: MinIO,
AWS S3). Blobs are content-addressed: a blob's key is the lower-case sha256 hex of its bytes,
so two writers of one key always write the same bytes and a put never needs a lock.

Every method may raise ``BlobUnavailableError`` when the backend cannot be reached; a missing
blob is not an error (``get`` answers None, ``exists`` False).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from store.blob_store import DirectoryBlobStore

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BlobUnavailableError(Exception):
    """The blob backend cannot be reached or refused the call; retrying later may succeed
    (HTTP 503). Deliberately not a ``StoreUnavailableError``: the store's circuit breaker must
    not open because the blobs' bucket is down."""

    # The message names the bucket, endpoint or directory (the service logs it).
    public_detail = "the blob backend is unreachable or refused the operation; see the service log"


class BlobMissingError(BlobUnavailableError):
    """The store references an image whose blob this replica cannot find (HTTP 503, not 404: a
    shared volume not mounted yet, or a bucket that lost the object; the image exists)."""

    public_detail = (
        "this replica cannot read the image's original: the store references it but the blob "
        "backend has no blob for it here (a shared volume not mounted, a lost object); retry, "
        "possibly through another replica"
    )


# A derived namespace's name: never two characters (a directory's ``ab`` levels are) nor a
# dotted name (the deletion hold's files and objects are).
DERIVED_NAME = re.compile(r"[a-z][a-z0-9-]{2,31}")


def check_derived_name(name: str) -> None:
    """ValueError unless ``name`` can name a derived namespace (``BlobBackend.derived``)."""
    if not DERIVED_NAME.fullmatch(name):
        raise ValueError(f"not a derived blob namespace: {name!r}")


def check_hash(content_hash: str) -> None:
    """ValueError unless ``content_hash`` is a lower-case sha256 hex digest."""
    if not SHA256_HEX.fullmatch(content_hash):
        raise ValueError(f"not a lower-case sha256 hex digest: {content_hash!r}")


@dataclass(frozen=True)
class BlobEntry:
    """One thing the sweep may remove: a blob, or a temporary object a crash left behind."""

    name: str  # backend-relative name (file name, object key); opaque to the sweep
    content_hash: str | None  # None for a temporary object
    modified: float  # Unix seconds: last write or touch (mtime, S3 LastModified)


# What a guarded removal did; "recent": touched within the grace period, so kept.
RemoveOutcome = Literal["removed", "recent", "referenced", "absent"]


class DeletionHold(Protocol):
    """While held (a backup copies the blobs), ``delete`` queues instead of deleting."""

    def is_held(self) -> bool: ...

    def acquire(self) -> None:
        """Take the hold; ``DeletionHeldError`` if a live process has it."""
        ...

    def defer(self, content_hash: str) -> None: ...

    def release(self) -> list[str]:
        """Drop the hold; the hashes whose deletion was deferred meanwhile (distinct)."""
        ...


class BlobBackend(Protocol):
    kind: str  # "directory" or "s3", for logs and /info

    @property
    def deletion_hold(self) -> DeletionHold: ...

    def describe(self) -> str:
        """Where the blobs are, for operators' messages (never for clients)."""
        ...

    def put(self, content_hash: str, data: bytes) -> bool:
        """Store ``data`` under ``content_hash``; True if written now, False if already there.

        ValueError if ``data`` does not hash to ``content_hash`` (a blob's name proves its
        content). A blob already there is touched (its modified time set to now): the sweep
        keeps blobs touched within its grace period, which protects one an enrollment in flight
        reuses before its store commit. Safe against concurrent puts of the same hash.
        """
        ...

    def get(self, content_hash: str) -> bytes | None: ...

    def exists(self, content_hash: str) -> bool: ...

    def delete(self, content_hash: str) -> bool:
        """Remove the blob (queued while a backup holds deletions); True if it existed."""
        ...

    def iter_hashes(self) -> Iterator[str]:
        """The hash of every blob present, no order (walks or lists everything: maintenance)."""
        ...

    def count(self) -> int:
        """Number of blobs (walks or lists everything: tests and maintenance)."""
        ...

    def count_dirs(self) -> int:
        """Directories the blobs take (0 for a bucket: it has none), for compaction reports."""
        ...

    def iter_entries(self) -> Iterator[BlobEntry]:
        """Every blob and temporary object with its modified time, for the sweep; listing pages
        through the backend, never holding all of it in memory at once."""
        ...

    def remove_temporary(self, entry: BlobEntry) -> bool:
        """Remove a temporary object ``iter_entries`` listed; True if it was there."""
        ...

    def remove_if(
        self, content_hash: str, keep: Callable[[float], RemoveOutcome | None]
    ) -> RemoveOutcome:
        """Remove the blob unless ``keep(modified)``, called with its modified time read as
        late as the backend allows, answers why to keep it. Ignores the deletion hold (the
        sweep checks it)."""
        ...

    def copy_into(self, content_hash: str, target: DirectoryBlobStore) -> bool:
        """Copy the blob into ``target`` (a backup's directory); False if it is missing."""
        ...

    def derived(self, name: str) -> BlobBackend:
        """The same backend for blobs made from this one's (thumbnails:
        ``store/thumbnail_blobs.py``), in their own namespace ``name`` beside the originals
        (which never list them). A derived blob is keyed by the hash of the blob it was made
        from, so ``put`` does not check its bytes' hash (its name proves its source, not its
        content); it shares this backend's deletion hold, so a backup holds both."""
        ...
