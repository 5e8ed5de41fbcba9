"""The blob backend on a directory: local, or a volume every replica mounts (a compose named
volume, a Kubernetes ReadWriteMany claim); see ``store/blob_backend.py`` for the interface.

A blob lives at ``root/ab/cd/<sha256 hex>`` (two directory levels of 256 each keep directories
small at millions of blobs). Writes are crash-safe: the bytes go to a temporary file in the
target directory, are fsynced, renamed over the final name (atomic on POSIX), and the directory
is fsynced so the rename itself survives a power loss. A reader therefore sees either no blob or
the whole blob.

Deleting a blob also removes its ``ab/cd`` and ``ab`` directories once they are empty, so a
store emptied of images holds no directories either. Another writer may be putting a blob in
the same directory at that moment: ``rmdir`` only removes an empty directory, and a ``put``
whose directory vanished between its ``mkdir`` and its ``mkstemp`` makes it again. While a
backup holds deletions (``store/blob_deletion_hold.py``), ``delete`` queues instead.

Blobs derived from these (thumbnails) live in a sub-directory of the same shape,
``root/<name>/ab/cd/<hash of the source>`` (``derived``); ``<name>`` is never an ``ab`` level,
so this store's walks skip it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from store.blob_backend import (
    SHA256_HEX,
    BlobEntry,
    BlobUnavailableError,
    RemoveOutcome,
    check_derived_name,
    check_hash,
)
from store.blob_deletion_hold import BlobDeletionHold
from store.fsync_dir import fsync_dir

_HEX2 = re.compile(r"[0-9a-f]{2}")
TMP_PREFIX = ".tmp-"
# An orphan renamed aside while the sweep checks it; one left by a crash is put back on the next
# listing.
ASIDE_PREFIX = ".sweep-"

# A put retries this often when a concurrent delete removes its directory each time in between.
_PUT_ATTEMPTS = 100


class DirectoryBlobStore:
    kind = "directory"

    def __init__(
        self,
        root: Path,
        *,
        keyed_by_source: bool = False,
        deletion_hold: BlobDeletionHold | None = None,
    ) -> None:
        """``keyed_by_source`` and ``deletion_hold``: a derived store's (:meth:`derived`),
        whose directory is only made by its first put."""
        self.root = Path(root)
        if not keyed_by_source:
            self.root.mkdir(parents=True, exist_ok=True)
        self.keyed_by_source = keyed_by_source
        self.deletion_hold = deletion_hold or BlobDeletionHold(self.root)

    def derived(self, name: str) -> DirectoryBlobStore:
        """Blobs made from these (``BlobBackend.derived``) in ``root/name``, whose name is no
        ``ab`` level, so this store's walks never enter it."""
        check_derived_name(name)
        return DirectoryBlobStore(
            self.root / name, keyed_by_source=True, deletion_hold=self.deletion_hold
        )

    def describe(self) -> str:
        return f"the blob directory {self.root}"

    def path_for(self, content_hash: str) -> Path:
        """Where the blob of ``content_hash`` (lower-case sha256 hex) lives; ValueError if bad."""
        check_hash(content_hash)
        return self.root / content_hash[:2] / content_hash[2:4] / content_hash

    def put(self, content_hash: str, data: bytes) -> bool:
        """Store ``data`` under ``content_hash``; True if written now, False if already there.

        Raises ValueError if ``data`` does not hash to ``content_hash``, so a blob's name
        always proves its content. A blob already there gets its mtime set to now: the sweep
        (``store/blob_sweep.py``) keeps blobs touched within its grace period, which is what
        protects a blob an enrollment in flight reuses before its store commit.
        """
        target = self.path_for(content_hash)
        if not self.keyed_by_source and hashlib.sha256(data).hexdigest() != content_hash:
            raise ValueError(f"data does not hash to {content_hash}")
        with self._unavailable_on_os_error():
            return self._put(target, data)

    def _put(self, target: Path, data: bytes) -> bool:
        try:
            os.utime(target)
            return False
        except FileNotFoundError:
            pass
        for _ in range(_PUT_ATTEMPTS):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
            except FileNotFoundError:
                continue  # a delete pruned ``ab`` or ``ab/cd`` between our mkdir and mkstemp
            break
        else:
            raise OSError(errno.ENOENT, f"{target.parent} kept vanishing while writing a blob")
        # From here the temporary file keeps the directory non-empty, so no rmdir can remove it.
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        # A delete of the same hash right after the rename may have pruned the directory: the
        # blob was written and then deleted, in that order, and there is nothing left to sync.
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(target.parent)
        return True

    def get(self, content_hash: str) -> bytes | None:
        path = self.path_for(content_hash)
        with self._unavailable_on_os_error():
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None

    @contextlib.contextmanager
    def _unavailable_on_os_error(self) -> Iterator[None]:
        # A full or read-only disk, an unreadable file, a volume gone stale: the directory
        # cannot serve now, which is a 503 like a bucket that does not answer, not a 500.
        try:
            yield
        except OSError as exc:
            raise BlobUnavailableError(f"{self.describe()}: {exc}") from exc

    def exists(self, content_hash: str) -> bool:
        return self.path_for(content_hash).is_file()

    def delete(self, content_hash: str) -> bool:
        """Remove the blob (queued while a backup holds deletions); True if it existed."""
        target = self.path_for(content_hash)
        if self.deletion_hold.is_held():
            if not target.is_file():
                return False
            self.deletion_hold.defer(content_hash)
            return True
        return self.remove_file(target)

    def remove_file(self, path: Path) -> bool:
        """Unlink one file of the tree (a blob, or a sweep's temporary file) and prune its
        directories if that left them empty; True if it existed. Ignores the deletion hold."""
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # A concurrent delete may have pruned the emptied directory already: nothing to sync.
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(path.parent)
        self._prune(path.parent)
        return True

    def iter_files(self) -> Iterator[Path]:
        """Every file in the ``ab/cd`` directories: blobs and temporary files, no order."""
        for top in _subdirs(self.root):
            for leaf in _subdirs(top):
                with contextlib.suppress(FileNotFoundError):
                    for entry in os.scandir(leaf):
                        if entry.is_file(follow_symlinks=False):
                            yield Path(entry.path)

    def iter_hashes(self) -> Iterator[str]:
        """The content hash of every blob present (walks the tree: maintenance only)."""
        for path in self.iter_files():
            if SHA256_HEX.fullmatch(path.name) and path.parent.name == path.name[2:4]:
                yield path.name

    def iter_entries(self) -> Iterator[BlobEntry]:
        """Blobs and temporary files with their mtimes; an orphan a crashed sweep left renamed
        aside is put back first (a put may have written the same bytes anew meanwhile:
        replacing them changes nothing)."""
        for path in list(self.iter_files()):
            name = path.name
            if name.startswith(ASIDE_PREFIX):
                name = name.removeprefix(ASIDE_PREFIX)
                _put_back(path, path.with_name(name))
                path = path.with_name(name)
            if name.startswith(TMP_PREFIX):
                yield BlobEntry(str(path.relative_to(self.root)), None, _mtime(path))
            elif SHA256_HEX.fullmatch(name) and path.parent.name == name[2:4]:
                yield BlobEntry(name, name, _mtime(path))
            # Anything else is not a file of this tree: left alone.

    def remove_temporary(self, entry: BlobEntry) -> bool:
        path = self.root / entry.name
        if not path.name.startswith(TMP_PREFIX) or path.parent.parent.parent != self.root:
            raise ValueError(f"not a temporary file of {self.root}: {entry.name!r}")
        return self.remove_file(path)

    def remove_if(
        self, content_hash: str, keep: Callable[[float], RemoveOutcome | None]
    ) -> RemoveOutcome:
        """The blob is renamed aside first, then its mtime and ``keep`` are checked: a put that
        reuses the bytes at that moment either touched the file before the rename (``keep``
        sees the new mtime and it is put back) or finds it gone and writes it anew."""
        path = self.path_for(content_hash)
        aside = path.with_name(ASIDE_PREFIX + content_hash)
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return "absent"
        try:
            reason = keep(_mtime(aside))
        except BaseException:
            _put_back(aside, path)
            raise
        if reason is not None:
            _put_back(aside, path)
            return reason
        self.remove_file(aside)
        return "removed"

    def copy_into(self, content_hash: str, target: DirectoryBlobStore) -> bool:
        """Hard-link (copy, across filesystems) the blob into ``target``; the directory entry
        is not fsynced here: ``target.fsync_dirs()`` syncs them all once a backup is copied."""
        dest = target.path_for(content_hash)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            _link_or_copy(self.path_for(content_hash), dest)
        except FileNotFoundError:
            return False
        return True

    def fsync_dirs(self) -> None:
        """fsync every ``ab/cd`` directory, so entries linked in by ``copy_into`` are durable."""
        for top in _subdirs(self.root):
            for leaf in _subdirs(top):
                fsync_dir(leaf)

    def count(self) -> int:
        """Number of blobs (walks the tree: for tests and maintenance, not request paths)."""
        return sum(1 for _ in self.iter_hashes())

    def count_dirs(self) -> int:
        """Number of ``ab`` and ``ab/cd`` directories (for tests and maintenance)."""
        return sum(1 + sum(1 for _ in _subdirs(top)) for top in _subdirs(self.root))

    def _prune(self, leaf: Path) -> None:
        """Remove ``ab/cd`` then ``ab`` if empty. A concurrent put may repopulate either at any
        moment; rmdir refuses a non-empty directory, and put recreates one removed under it."""
        for directory in (leaf, leaf.parent):
            if directory == self.root:
                return
            try:
                directory.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
        # Not fsynced: an empty directory that reappears after a power loss costs a few bytes.


def _subdirs(directory: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if _HEX2.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: recent, so nothing is removed


def _put_back(aside: Path, path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.replace(aside, path)


def _link_or_copy(source: Path, dest: Path) -> None:
    # Blobs are never modified in place, so sharing the inode is safe, and costs no space.
    try:
        os.link(source, dest)
        return
    except FileExistsError:
        return  # the same name holds the same bytes
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
    tmp = dest.with_name(TMP_PREFIX + dest.name)
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
