"""Where an original's thumbnail is kept: the one place its key is derived from the original's.

A thumbnail is a derived blob (``BlobBackend.derived``) in the namespace :data:`NAMESPACE`
beside the originals — ``<blob dir>/thumbnails/ab/cd/<h>`` on a directory,
``<prefix>thumbnails/<h>`` in a bucket — keyed by its original's content hash ``h``. So every
blob rule reaches it with no table of its own:

- deletion: :func:`delete_original` removes it with its original, once no image references
  ``h`` (the retriever's release of a hash);
- sweeping: a thumbnail is kept exactly while its original's hash is referenced, which is the
  originals' own rule with the same key (``store/blob_sweep.py`` sweeps both namespaces);
- backup: the hashes a snapshot references name the thumbnails to copy as well
  (``store/store_backup.py``), and the deletion hold is the originals' one.

Made on first request and stored, never regenerated while stored (``app/routes/images.py``).
"""

from __future__ import annotations

from store.blob_backend import BlobBackend, check_hash

NAMESPACE = "thumbnails"


def thumbnail_blobs(blobs: BlobBackend) -> BlobBackend:
    """The thumbnails' backend: ``blobs``' derived namespace :data:`NAMESPACE`."""
    return blobs.derived(NAMESPACE)


def thumbnail_key(content_hash: str) -> str:
    """The key of the thumbnail of the original whose content hash is ``content_hash``: that
    hash itself, in the thumbnails' namespace (so the sweep and the backup need no mapping)."""
    check_hash(content_hash)
    return content_hash


def delete_original(blobs: BlobBackend, content_hash: str) -> None:
    """Delete an original nothing references any more, and its thumbnail if one was made
    (both queued while a backup holds deletions)."""
    blobs.delete(content_hash)
    thumbnail_blobs(blobs).delete(thumbnail_key(content_hash))
