"""Give back the space of blobs no image references and of temporary files crashes left behind.

Why there are any: the retriever writes an enrollment's blobs *before* its store commit (so a
committed image always has its bytes), so a crash or a failed commit in between leaves an
orphan blob, and a crash inside ``BlobStore.put`` leaves a ``.tmp-*`` file.

What must never be removed is a blob of a write still in flight: written (or, for bytes already
kept, touched by ``BlobStore.put``) but not yet committed. Such a blob's mtime is recent, so
both kinds of file are only removed once older than a grace period (``BLOB_SWEEP_GRACE_S``,
an hour: far beyond the few seconds between a put and its commit, whose store calls time out
within seconds). Each orphan is first renamed aside, then its mtime and the store are checked
once more, so an enrollment that reuses the bytes at that moment either touched the file before
the rename (the check sees it and renames it back) or finds it gone and writes it anew.
Nothing is removed while a backup holds deletions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from store.blob_store import TMP_PREFIX, BlobStore
from store.store import Store

log = logging.getLogger(__name__)

BLOB_SWEEP_GRACE_S = 3600.0
# An orphan renamed aside while it is checked; one left by a crash is renamed back next sweep.
ASIDE_PREFIX = ".sweep-"


@dataclass(frozen=True)
class SweepReport:
    orphans_removed: int
    temporary_removed: int
    kept_recent: int  # unreferenced blobs and temporary files younger than the grace period
    held: bool  # a backup held deletions: nothing was removed

    def line(self) -> str:
        if self.held:
            return "blob sweep skipped: a backup holds deletions"
        return (
            f"blob sweep: {self.orphans_removed} orphan blobs and {self.temporary_removed} "
            f"temporary files removed, {self.kept_recent} younger than the grace period kept"
        )


def sweep_blobs(
    blobs: BlobStore, store: Store, *, grace_s: float = BLOB_SWEEP_GRACE_S
) -> SweepReport:
    """Remove orphan blobs and temporary files older than ``grace_s`` seconds."""
    if blobs.deletion_hold.is_held():
        return SweepReport(0, 0, 0, held=True)
    cutoff = time.time() - grace_s
    # Read before the walk: a blob committed after this read is recent, or checked again.
    referenced = _referenced(store)
    orphans = temporary = recent = 0
    for path in list(blobs.iter_files()):
        name = path.name
        if name.startswith(ASIDE_PREFIX):
            _put_back(path, path.with_name(name.removeprefix(ASIDE_PREFIX)))
            name = name.removeprefix(ASIDE_PREFIX)
            path = path.with_name(name)
        if name.startswith(TMP_PREFIX):
            if _mtime(path) >= cutoff:
                recent += 1
            elif blobs.remove_file(path):
                temporary += 1
            continue
        digest = _digest(name)
        if digest is None or path.parent.name != name[2:4]:
            continue  # not a blob of this tree: leave it alone
        if digest in referenced:
            continue
        if blobs.deletion_hold.is_held():
            return SweepReport(orphans, temporary, recent, held=True)
        outcome = _remove_if_unreferenced(blobs, store, name, cutoff)
        orphans += outcome == "removed"
        recent += outcome == "recent"
    return SweepReport(orphans, temporary, recent, held=False)


def remove_unreferenced(
    blobs: BlobStore, store: Store, hashes: Iterable[str], *, grace_s: float = BLOB_SWEEP_GRACE_S
) -> int:
    """Remove the blobs of ``hashes`` that no image references and nothing touched within
    ``grace_s`` (deletions a backup deferred); the number removed. A blob kept here because it
    is recent is an orphan the next sweep removes."""
    cutoff = time.time() - grace_s
    return sum(_remove_if_unreferenced(blobs, store, h, cutoff) == "removed" for h in hashes)


Outcome = Literal["removed", "recent", "referenced", "absent"]


def _remove_if_unreferenced(
    blobs: BlobStore, store: Store, content_hash: str, cutoff: float
) -> Outcome:
    path = blobs.path_for(content_hash)
    aside = path.with_name(ASIDE_PREFIX + content_hash)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return "absent"
    try:
        recent = _mtime(aside) >= cutoff
        keep = recent or store.is_hash_referenced(content_hash)
    except BaseException:
        _put_back(aside, path)
        raise
    if keep:
        _put_back(aside, path)
        return "recent" if recent else "referenced"
    blobs.remove_file(aside)
    return "removed"


def _put_back(aside: Path, path: Path) -> None:
    # A put may have written the same bytes anew meanwhile: replacing them changes nothing.
    with contextlib.suppress(FileNotFoundError):
        os.replace(aside, path)


def _referenced(store: Store) -> set[bytes]:
    """Every content hash an image holds, as 32 bytes (half the memory of the hex strings)."""
    out: set[bytes] = set()
    for image in store.iter_images():
        with contextlib.suppress(ValueError):
            out.add(bytes.fromhex(image.content_hash))
    return out


def _digest(name: str) -> bytes | None:
    """The 32 bytes a blob's lower-case sha256 hex name spells, else None."""
    if len(name) != 64 or name != name.lower():
        return None
    try:
        return bytes.fromhex(name)
    except ValueError:
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: nothing to remove


def log_sweep(blobs: BlobStore, store: Store, *, grace_s: float = BLOB_SWEEP_GRACE_S) -> None:
    """Sweep and log the counts; a failure is logged, never raised (start-up must go on)."""
    try:
        start = time.perf_counter()
        report = sweep_blobs(blobs, store, grace_s=grace_s)
    except Exception as exc:
        log.warning("blob sweep failed: %s: %s", type(exc).__name__, exc)
        return
    log.info("%s, in %.1f s", report.line(), time.perf_counter() - start)
