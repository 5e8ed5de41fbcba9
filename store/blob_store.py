"""Content-addressed store of original image bytes on a local filesystem.

A blob lives at ``root/ab/cd/<sha256 hex>`` (two directory levels of 256 each keep directories
small at millions of blobs). Writes are crash-safe: the bytes go to a temporary file in the
target directory, are fsynced, renamed over the final name (atomic on POSIX), and the directory
is fsynced so the rename itself survives a power loss. A reader therefore sees either no blob or
the whole blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from store.fsync_dir import fsync_dir

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, content_hash: str) -> Path:
        """Where the blob of ``content_hash`` (lower-case sha256 hex) lives; ValueError if bad."""
        if not _SHA256_HEX.fullmatch(content_hash):
            raise ValueError(f"not a lower-case sha256 hex digest: {content_hash!r}")
        return self.root / content_hash[:2] / content_hash[2:4] / content_hash

    def put(self, content_hash: str, data: bytes) -> bool:
        """Store ``data`` under ``content_hash``; True if written now, False if already there.

        Raises ValueError if ``data`` does not hash to ``content_hash``, so a blob's name
        always proves its content.
        """
        target = self.path_for(content_hash)
        if hashlib.sha256(data).hexdigest() != content_hash:
            raise ValueError(f"data does not hash to {content_hash}")
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
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
        fsync_dir(target.parent)
        return True

    def get(self, content_hash: str) -> bytes | None:
        try:
            return self.path_for(content_hash).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, content_hash: str) -> bool:
        return self.path_for(content_hash).is_file()

    def delete(self, content_hash: str) -> bool:
        """Remove the blob; True if it existed."""
        target = self.path_for(content_hash)
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(target.parent)
        return True

    def count(self) -> int:
        """Number of blobs (walks the tree: for tests and maintenance, not request paths)."""
        return sum(
            1 for p in self.root.glob("??/??/*") if _SHA256_HEX.fullmatch(p.name) and p.is_file()
        )
