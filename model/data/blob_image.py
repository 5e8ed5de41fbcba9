"""An image kept as a blob by the service (its original, content-addressed): where a training
sample's bytes come from when it was read from a service's store instead of a folder."""

from __future__ import annotations

from dataclasses import dataclass

from store.blob_backend import BlobBackend, BlobUnavailableError


class BlobUnreadableError(OSError):
    """The blob is missing or its backend refused the read. An ``OSError``, so the training
    and evaluation readers treat it as they treat an unreadable file: skipped and counted."""


@dataclass(frozen=True, eq=False)
class BlobImage:
    """The original of ``content_hash`` (sha256 hex) in ``blobs``, read only when asked (a
    dataset of these holds references, never the images).

    ``eq=False``: two references are the same object or different (a backend has no value
    equality), so samples holding them stay hashable.
    """

    blobs: BlobBackend
    content_hash: str

    def read(self) -> bytes:
        """The blob's bytes; :class:`BlobUnreadableError` if missing or unreachable."""
        try:
            data = self.blobs.get(self.content_hash)
        except BlobUnavailableError as exc:
            raise BlobUnreadableError(f"blob {self.content_hash}: {exc}") from exc
        if data is None:
            raise BlobUnreadableError(f"{self.blobs.describe()} has no blob {self.content_hash}")
        return data
