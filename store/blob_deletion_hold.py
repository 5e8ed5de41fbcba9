"""A hold on blob deletions while a backup copies the blobs, shared by every process on the disk.

A backup takes its snapshot of the store *after* it has put the hold in place. A blob is only
deleted after the store commit that stopped referencing it, so every blob the snapshot
references is either deleted later — and then sees the hold and is queued instead — or not at
all: the copy never misses a blob its snapshot needs. The hold is a file in the blob directory
(``.deletion-hold``, holding the holder's host and pid), so it works across the service and a
``centroid-retrieval backup`` run beside it; queued hashes are appended to
``.pending-deletes``, one per line, and applied by the holder once it lets go.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

HOLD_NAME = ".deletion-hold"
PENDING_NAME = ".pending-deletes"


def owner_record() -> bytes:
    """What a hold holds: this process's host and pid (JSON)."""
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()


def owner_is_stale(raw: str) -> bool:
    """True if ``raw`` (an ``owner_record``) names a process of this host that no longer runs."""
    try:
        owner = json.loads(raw or "{}")
    except ValueError:
        return False  # being written right now by its holder
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False  # cannot tell for another machine: assume it is alive
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


class DeletionHeldError(RuntimeError):
    """Another live process holds the blob directory's deletion hold (a backup is running)."""


class BlobDeletionHold:
    def __init__(self, root: Path) -> None:
        self.hold_path = Path(root) / HOLD_NAME
        self.pending_path = Path(root) / PENDING_NAME

    def is_held(self) -> bool:
        return self.hold_path.exists()

    def acquire(self) -> None:
        """Take the hold; ``DeletionHeldError`` if a live process has it.

        A hold left by a process that died on this host (a killed backup) is taken over rather
        than blocking deletions forever.
        """
        owner = owner_record()
        for _ in range(2):
            try:
                fd = os.open(self.hold_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self.is_stale():
                    raise DeletionHeldError(
                        f"{self.hold_path} exists: another backup is running ({self.holder()})"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    self.hold_path.unlink()
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(owner)
                f.flush()
                os.fsync(f.fileno())
            return
        raise DeletionHeldError(f"could not take {self.hold_path}")

    def holder(self) -> str:
        try:
            return self.hold_path.read_text()
        except FileNotFoundError:
            return "nobody"

    def is_stale(self) -> bool:
        """True if the hold names a process of this host that no longer runs."""
        try:
            raw = self.hold_path.read_text()
        except FileNotFoundError:
            return True
        return owner_is_stale(raw)

    def defer(self, content_hash: str) -> None:
        """Queue one deletion for when the hold is released."""
        # One short O_APPEND write per line: concurrent writers never interleave within a line.
        fd = os.open(self.pending_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (content_hash + "\n").encode())
        finally:
            os.close(fd)

    def release(self) -> list[str]:
        """Drop the hold; the hashes whose deletion was deferred meanwhile (distinct, in order).

        The hold goes first, then the queue is read: a deletion queued between the two is still
        in the file that is read.
        """
        with contextlib.suppress(FileNotFoundError):
            self.hold_path.unlink()
        try:
            text = self.pending_path.read_text()
        except FileNotFoundError:
            return []
        self.pending_path.unlink()
        return list(dict.fromkeys(line for line in text.splitlines() if line))
