"""An original's thumbnail, made once: read from the thumbnails' blobs, or made from the original
and stored there (``store/thumbnail_blobs.py`` keys it; ``artifact/thumbnail.py`` draws it).

Two first requests at once both make it and both store it; a thumbnail's bytes depend only on
its original's (and on Pillow), so either write leaves the same bytes. A thumbnail made while
its image is being deleted can outlive the deletion: it is then an orphan whose original's hash
no image references, which the blob sweep removes like any orphan.
"""

from __future__ import annotations

from artifact.thumbnail import make_thumbnail
from store.blob_backend import BlobBackend
from store.thumbnail_blobs import thumbnail_blobs, thumbnail_key


def thumbnail_of(blobs: BlobBackend, content_hash: str, *, max_pixels: int) -> bytes | None:
    """The JPEG thumbnail of the original ``content_hash``; None if the original is missing.
    Blocking (blob calls, a decode): run it off the event loop."""
    thumbnails = thumbnail_blobs(blobs)
    key = thumbnail_key(content_hash)
    stored = thumbnails.get(key)
    if stored is not None:
        return stored
    original = blobs.get(content_hash)
    if original is None:
        return None
    made = make_thumbnail(original, max_pixels=max_pixels)
    thumbnails.put(key, made)
    return made
