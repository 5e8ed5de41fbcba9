"""Per-image embeddings beside the centroid index: item id -> its image ids and unit rows.

The second stage of a search (``index/two_stage_fusion.py``) scores the query against every
image of its M candidate items; this keeps those images in memory so that costs no store
round trip. Rows are L2-normalised and stored as float16 (half the bytes of float32; a cosine
of unit float16 rows is off by < 1e-3 from float32's, far below the gaps the ranking sees).

Each item's arrays are replaced, never written in place, so a reader may use what
:meth:`ImageEmbeddings.get` returned while writers change the item. Thread-safe.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Bytes per item besides its rows: its dict slot and key, the ids' tuple and the ndarray header
# (sys.getsizeof of an empty (0, D) array is 112 on CPython 3.11; a dict slot with its share of
# the table about 100).
ITEM_OVERHEAD_BYTES = 112 + 100 + 56
# Per image besides its row: a tuple slot and a 32-hex image id (sys.getsizeof: 81).
IMAGE_OVERHEAD_BYTES = 8 + 81


@dataclass(frozen=True)
class ItemImages:
    """One item's images: ``image_ids`` (enrollment order) and ``rows`` ``(n, D)`` float16 unit
    rows, row ``j`` the embedding of ``image_ids[j]``. Read-only."""

    image_ids: tuple[str, ...]
    rows: npt.NDArray[np.float16]


def unit_rows(embeddings: npt.NDArray[np.floating]) -> npt.NDArray[np.float16]:
    """``(n, D)`` raw embeddings -> ``(n, D)`` float16 unit rows (normalised in float64; an
    all-zero row stays zero)."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"expected (n, D) embeddings, got {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    out: npt.NDArray[np.float16] = (e / np.where(norms > 0, norms, 1.0)).astype(np.float16)
    return out


class ImageEmbeddings:
    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self._items: dict[str, ItemImages] = {}
        self._images = 0
        self._id_bytes = 0  # the item ids' strings
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    @property
    def image_count(self) -> int:
        return self._images

    def get(self, item_id: str) -> ItemImages | None:
        return self._items.get(item_id)

    def count(self, item_id: str) -> int:
        held = self._items.get(item_id)
        return 0 if held is None else len(held.image_ids)

    def item_ids(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def set_item(
        self, item_id: str, image_ids: Sequence[str], embeddings: npt.NDArray[np.floating]
    ) -> None:
        """Replace ``item_id``'s images by ``image_ids`` and their ``(n, D)`` embeddings (raw or
        unit; normalised here). ``n == 0`` removes the item."""
        if len(image_ids) == 0:
            self.remove_item(item_id)
            return
        rows = self._checked(embeddings, len(image_ids))
        self._put(item_id, ItemImages(tuple(image_ids), rows))

    def add_images(
        self, item_id: str, image_ids: Sequence[str], embeddings: npt.NDArray[np.floating]
    ) -> int:
        """Append the images the item does not hold yet (by id; ``(n, D)`` embeddings, raw or
        unit); returns how many were added."""
        rows = self._checked(embeddings, len(image_ids))
        with self._lock:
            held = self._items.get(item_id)
            have = set() if held is None else set(held.image_ids)
            keep: list[int] = []
            for j, image_id in enumerate(image_ids):
                if image_id not in have:  # held already, or repeated in this call: skipped
                    have.add(image_id)
                    keep.append(j)
            if not keep:
                return 0
            new_ids = tuple(image_ids[j] for j in keep)
            if held is None:
                self._put_locked(item_id, ItemImages(new_ids, rows[keep]))
            else:
                self._put_locked(
                    item_id,
                    ItemImages(held.image_ids + new_ids, np.concatenate([held.rows, rows[keep]])),
                )
            return len(keep)

    def remove_images(self, item_id: str, image_ids: Iterable[str]) -> int:
        """Drop those of ``image_ids`` the item holds (its last one: the item); returns how many."""
        gone = set(image_ids)
        with self._lock:
            held = self._items.get(item_id)
            if held is None:
                return 0
            keep = [j for j, i in enumerate(held.image_ids) if i not in gone]
            removed = len(held.image_ids) - len(keep)
            if removed == 0:
                return 0
            if not keep:
                self._remove_locked(item_id)
            else:
                kept = ItemImages(tuple(held.image_ids[j] for j in keep), held.rows[keep])
                self._put_locked(item_id, kept)
            return removed

    def remove_item(self, item_id: str) -> None:
        with self._lock:
            self._remove_locked(item_id)

    def memory_bytes(self) -> int:
        """Rows, ids and per-item overhead (approximate beyond the rows, which are exact)."""
        with self._lock:
            return (
                self._images * (self.dim * 2 + IMAGE_OVERHEAD_BYTES)
                + len(self._items) * ITEM_OVERHEAD_BYTES
                + self._id_bytes
            )

    @staticmethod
    def estimate_bytes(dim: int, items: int, images: int, id_bytes: int = 0) -> int:
        """What :meth:`memory_bytes` would say for ``items`` items holding ``images`` images."""
        return images * (dim * 2 + IMAGE_OVERHEAD_BYTES) + items * ITEM_OVERHEAD_BYTES + id_bytes

    # -- internals --------------------------------------------------------------------------

    def _checked(self, embeddings: npt.NDArray[np.floating], n: int) -> npt.NDArray[np.float16]:
        e = np.asarray(embeddings)
        if e.ndim != 2 or e.shape != (n, self.dim):
            raise ValueError(f"expected ({n}, {self.dim}) embeddings, got {e.shape}")
        return unit_rows(e)

    def _put(self, item_id: str, images: ItemImages) -> None:
        with self._lock:
            self._put_locked(item_id, images)

    def _put_locked(self, item_id: str, images: ItemImages) -> None:
        images.rows.setflags(write=False)
        old = self._items.get(item_id)
        if old is None:
            self._id_bytes += sys.getsizeof(item_id)
        else:
            self._images -= len(old.image_ids)
        self._items[item_id] = images
        self._images += len(images.image_ids)

    def _remove_locked(self, item_id: str) -> None:
        old = self._items.pop(item_id, None)
        if old is not None:
            self._images -= len(old.image_ids)
            self._id_bytes -= sys.getsizeof(item_id)
