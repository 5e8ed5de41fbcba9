"""Give back the space of blobs no image references and of temporary files crashes left behind.

Why there are any: the retriever writes an enrollment's blobs *before* its store commit (so a
committed image always has its bytes), so a crash or a failed commit in between leaves an
orphan blob, and a crash inside a directory's ``put`` leaves a ``.tmp-*`` file.

What must never be removed is a blob of a write still in flight: written (or, for bytes already
kept, touched by the backend's ``put``) but not yet committed. Such a blob's mtime is recent, so
both kinds of file are only removed once older than a grace period (``BLOB_SWEEP_GRACE_S``,
an hour: far beyond the few seconds between a put and its commit, whose store calls time out
within seconds). Each orphan goes through the backend's guarded removal (``remove_if``), which
reads its modified time once more, as late as the backend allows, and asks the store again
(the directory renames it aside first; see each backend for what that closes). Nothing is
removed while a backup holds deletions. The same code sweeps a directory and a bucket, and
the thumbnails beside the originals (``store/thumbnail_blobs.py``): keyed by their original's
hash, a thumbnail is an orphan exactly when its original's hash is unreferenced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from store.blob_backend import BlobBackend, RemoveOutcome
from store.hash_references import HashReferences
from store.thumbnail_blobs import thumbnail_blobs

log = logging.getLogger(__name__)

BLOB_SWEEP_GRACE_S = 3600.0


@dataclass(frozen=True)
class SweepReport:
    orphans_removed: int
    temporary_removed: int
    kept_recent: int  # unreferenced blobs and temporary files younger than the grace period
    held: bool  # a backup held deletions: nothing (more) was removed
    thumbnails_removed: int = 0  # thumbnails of originals no image references

    def line(self) -> str:
        if self.held:
            return "blob sweep skipped: a backup holds deletions"
        return (
            f"blob sweep: {self.orphans_removed} orphan blobs and {self.temporary_removed} "
            f"temporary files removed (and {self.thumbnails_removed} orphan thumbnails), "
            f"{self.kept_recent} younger than the grace period kept"
        )


def sweep_blobs(
    blobs: BlobBackend, store: HashReferences, *, grace_s: float = BLOB_SWEEP_GRACE_S
) -> SweepReport:
    """Remove orphan blobs, orphan thumbnails and temporary files older than ``grace_s``
    seconds."""
    if blobs.deletion_hold.is_held():
        return SweepReport(0, 0, 0, held=True)
    cutoff = time.time() - grace_s
    # Read before the listings: a blob committed after this read is recent, or checked again.
    referenced = _referenced(store)
    originals = _sweep(blobs, store, referenced, cutoff)
    if originals.held:
        return originals
    thumbnails = _sweep(thumbnail_blobs(blobs), store, referenced, cutoff)
    return SweepReport(
        originals.orphans_removed,
        originals.temporary_removed + thumbnails.temporary_removed,
        originals.kept_recent + thumbnails.kept_recent,
        held=thumbnails.held,
        thumbnails_removed=thumbnails.orphans_removed,
    )


def _sweep(
    blobs: BlobBackend, store: HashReferences, referenced: set[bytes], cutoff: float
) -> SweepReport:
    """One namespace's sweep: every blob whose key is in ``referenced`` stays."""
    orphans = temporary = recent = 0
    for entry in blobs.iter_entries():
        if entry.content_hash is None:
            if entry.modified >= cutoff:
                recent += 1
            elif blobs.remove_temporary(entry):
                temporary += 1
            continue
        if bytes.fromhex(entry.content_hash) in referenced:
            continue
        if entry.modified >= cutoff:
            recent += 1
            continue
        if blobs.deletion_hold.is_held():
            return SweepReport(orphans, temporary, recent, held=True)
        outcome = blobs.remove_if(entry.content_hash, _keep(store, entry.content_hash, cutoff))
        orphans += outcome == "removed"
        recent += outcome == "recent"
    return SweepReport(orphans, temporary, recent, held=False)


def remove_unreferenced(
    blobs: BlobBackend,
    store: HashReferences,
    hashes: Iterable[str],
    *,
    grace_s: float = BLOB_SWEEP_GRACE_S,
) -> int:
    """Remove the blobs of ``hashes`` that no image references and nothing touched within
    ``grace_s`` (deletions a backup deferred); the number removed. A blob kept here because it
    is recent is an orphan the next sweep removes."""
    cutoff = time.time() - grace_s
    return sum(blobs.remove_if(h, _keep(store, h, cutoff)) == "removed" for h in hashes)


def _keep(
    store: HashReferences, content_hash: str, cutoff: float
) -> Callable[[float], RemoveOutcome | None]:
    """Why the blob must stay, judged at removal time from its modified time and the store."""

    def keep(modified: float) -> RemoveOutcome | None:
        if modified >= cutoff:
            return "recent"
        return "referenced" if store.is_hash_referenced(content_hash) else None

    return keep


def _referenced(store: HashReferences) -> set[bytes]:
    """Every content hash an image holds, as 32 bytes (half the memory of the hex strings)."""
    out: set[bytes] = set()
    for image in store.iter_images():
        try:
            out.add(bytes.fromhex(image.content_hash))
        except ValueError:
            continue
    return out


def log_sweep(
    blobs: BlobBackend, store: HashReferences, *, grace_s: float = BLOB_SWEEP_GRACE_S
) -> None:
    """Sweep and log the counts; a failure is logged, never raised (start-up must go on)."""
    try:
        start = time.perf_counter()
        report = sweep_blobs(blobs, store, grace_s=grace_s)
    except Exception as exc:
        log.warning("blob sweep failed: %s: %s", type(exc).__name__, exc)
        return
    log.info("%s, in %.1f s", report.line(), time.perf_counter() - start)
