"""Who references a blob: what the blob sweep asks of a store, and of several at once.

During a model migration two stores (the original and the target's shadow) hold images of the
same blobs (``store/migration_record.py``): a blob is an orphan only when neither references
it, so the sweep and a backup's deferred deletions ask ``AnyOf`` both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Protocol

from store.records import ImageRecord


class HashReferences(Protocol):
    def iter_images(self) -> Iterator[ImageRecord]: ...

    def is_hash_referenced(self, content_hash: str) -> bool: ...


class AnyOf:
    """The references of every store in ``stores``: an image of any of them counts."""

    def __init__(self, stores: Sequence[HashReferences]) -> None:
        self.stores = list(stores)

    def iter_images(self) -> Iterator[ImageRecord]:
        return chain.from_iterable(s.iter_images() for s in self.stores)

    def is_hash_referenced(self, content_hash: str) -> bool:
        return any(s.is_hash_referenced(content_hash) for s in self.stores)
