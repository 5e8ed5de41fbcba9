"""Exact item-centroid index: one unit-norm float32 row per item in a FAISS ``IndexFlatIP``.

Updates are O(d) whatever the index size. FAISS's own delete (``IndexIDMap2.remove_ids``)
scans every id, which measured 21–55 ms per call at 100k items (see
``bench/centroid_index_updates.py``), so this class keeps its own ``item_id -> slot`` map:

* a new item appends one row (``IndexFlat.add``; the storage grows geometrically);
* an existing item's row is overwritten in place through a numpy view of FAISS's storage;
* a removed item's row is overwritten by the last row, and the storage shrinks by one row.

Searches run in parallel with each other (FAISS releases the GIL while scanning); writes are
exclusive, through a writer-preferring ``ReadWriteLock``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence

import faiss
import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.rw_lock import ReadWriteLock
from index.tie_aware_top_k import (
    candidates_covering_ties,
    float32_dot_slack,
    rank_by_score_then_id,
)

# Rows are buffered this many at a time during ``rebuild`` so that a bulk load from a large
# store never holds more than one chunk in Python besides the FAISS storage itself.
REBUILD_CHUNK_ROWS = 4096

_FLOAT32_BYTES = 4


class FlatCentroidIndex:
    """Item id (``str``) → unit-norm ``(dim,)`` float32 centroid, exact inner-product search."""

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = dim
        self._faiss = faiss.IndexFlatIP(dim)
        self._slot_of: dict[str, int] = {}
        self._ids: list[str] = []
        self._id_bytes = 0
        self._version = 0
        self._lock = ReadWriteLock()
        self._slack = float32_dot_slack(dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def version(self) -> int:
        """Incremented by every successful mutation (upsert, remove, rebuild)."""
        return self._version

    # -- writes -------------------------------------------------------------------------------

    def upsert(self, item_id: str, centroid: npt.NDArray[np.floating]) -> None:
        """Insert or overwrite ``item_id``'s row with ``centroid`` ``(dim,)``, L2-normalised.

        O(dim): never touches other rows. Raises ValueError on a wrong shape or a non-finite
        value.
        """
        row = self._check_row(centroid)
        with self._lock.write():
            slot = self._slot_of.get(item_id)
            if slot is None:
                self._faiss.add(row[np.newaxis, :])
                self._slot_of[item_id] = len(self._ids)
                self._ids.append(item_id)
                self._id_bytes += sys.getsizeof(item_id)
            else:
                self._rows()[slot] = row
            self._version += 1

    def remove(self, item_id: str) -> bool:
        """Delete ``item_id``'s row in O(dim) (the last row moves into its slot).

        Returns False (and changes nothing) if the item is not in the index.
        """
        with self._lock.write():
            slot = self._slot_of.pop(item_id, None)
            if slot is None:
                return False
            last = len(self._ids) - 1
            if slot != last:
                rows = self._rows()
                rows[slot] = rows[last]
                moved = self._ids[last]
                self._ids[slot] = moved
                self._slot_of[moved] = slot
            self._ids.pop()
            self._id_bytes -= sys.getsizeof(item_id)
            # IndexFlat searches ``ntotal`` rows of ``codes``; both must shrink together. The
            # vector keeps its capacity, so a later append does not reallocate.
            self._faiss.codes.resize(last * self._dim * _FLOAT32_BYTES)
            self._faiss.ntotal = last
            self._version += 1
            return True

    def rebuild(self, items: Iterable[tuple[str, npt.NDArray[np.floating]]]) -> None:
        """Replace the whole content with ``items`` (each centroid ``(dim,)``, normalised here).

        The new index is built aside and swapped in, so searches keep answering from the old
        content meanwhile. Raises ValueError on a repeated item id or a bad row; the old
        content is then kept.
        """
        fresh = faiss.IndexFlatIP(self._dim)
        slot_of: dict[str, int] = {}
        ids: list[str] = []
        chunk: list[npt.NDArray[np.float32]] = []
        for item_id, centroid in items:
            if item_id in slot_of:
                raise ValueError(f"item id {item_id!r} appears twice in rebuild input")
            slot_of[item_id] = len(ids)
            ids.append(item_id)
            chunk.append(self._check_row(centroid))
            if len(chunk) == REBUILD_CHUNK_ROWS:
                fresh.add(np.stack(chunk))
                chunk.clear()
        if chunk:
            fresh.add(np.stack(chunk))
        id_bytes = sum(sys.getsizeof(i) for i in ids)
        with self._lock.write():
            self._faiss, self._slot_of, self._ids, self._id_bytes = fresh, slot_of, ids, id_bytes
            self._version += 1

    def load_rows(self, ids: Sequence[str], rows: npt.NDArray[np.float32]) -> None:
        """``RowExport.load_rows``: ids distinct, ``rows`` ``(len(ids), dim)`` float32 and
        unit-norm (not checked row by row: they are this class's own exported rows). Built
        aside and swapped in, like ``rebuild``."""
        if rows.shape != (len(ids), self._dim) or rows.dtype != np.float32:
            raise ValueError(
                f"rows must be ({len(ids)}, {self._dim}) float32, got {rows.shape} {rows.dtype}"
            )
        slot_of = {item_id: slot for slot, item_id in enumerate(ids)}
        if len(slot_of) != len(ids):
            raise ValueError("an item id appears twice in load_rows input")
        fresh = faiss.IndexFlatIP(self._dim)
        n = len(ids)
        if n:
            # Sized once and filled in place: one copy of the rows, no regrowth of the storage
            # (``add`` in chunks would reallocate and copy it again as it grows).
            fresh.codes.resize(n * self._dim * _FLOAT32_BYTES)
            fresh.ntotal = n
            storage = faiss.rev_swig_ptr(fresh.get_xb(), n * self._dim).reshape(n, self._dim)
            for start in range(0, n, REBUILD_CHUNK_ROWS):
                storage[start : start + REBUILD_CHUNK_ROWS] = rows[
                    start : start + REBUILD_CHUNK_ROWS
                ]
        id_list = list(ids)
        id_bytes = sum(sys.getsizeof(i) for i in id_list)
        with self._lock.write():
            self._faiss, self._slot_of, self._ids, self._id_bytes = (
                fresh,
                slot_of,
                id_list,
                id_bytes,
            )
            self._version += 1

    # -- reads --------------------------------------------------------------------------------

    def iter_row_chunks(
        self, rows_per_chunk: int
    ) -> Iterator[tuple[list[str], npt.NDArray[np.float32]]]:
        """``RowExport.iter_row_chunks``: slots ``[start, start + rows_per_chunk)`` copied under
        the read lock, so a write waits for one chunk's copy at most, not the whole index's."""
        if rows_per_chunk < 1:
            raise ValueError(f"rows_per_chunk must be >= 1, got {rows_per_chunk}")
        start = 0
        while True:
            with self._lock.read():
                end = min(len(self._ids), start + rows_per_chunk)
                if start >= end:
                    return
                chunk = (self._ids[start:end], self._rows()[start:end].copy())
            yield chunk
            start = end

    def search(self, queries: npt.NDArray[np.floating], k: int) -> list[list[tuple[str, float]]]:
        """Best ``k`` items per query by inner product with the stored centroids.

        ``queries`` is ``(Q, dim)`` and should be unit-norm (then scores are cosines in
        ``[-1, 1]``); it is not normalised here. Returns Q lists of at most ``k`` distinct
        ``(item_id, score)``, best first, equal scores by item id ascending. Scores are
        recomputed in float64 from the stored float32 rows, so equal rows give equal scores
        whatever path FAISS took. An empty index gives Q empty lists; ``k = 0`` too.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must be (Q, {self._dim}), got {q.shape}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if k == 0:
            return [[] for _ in range(q.shape[0])]
        with self._lock.read():
            candidates = candidates_covering_ties(
                self._search_faiss, q, k, len(self._ids), self._slack
            )
            rows = self._rows()
            q64 = q.astype(np.float64)
            out: list[list[tuple[str, float]]] = []
            for qi, (slots, _) in enumerate(candidates):
                exact = (rows[slots].astype(np.float64) * q64[qi]).sum(axis=1)
                out.append(rank_by_score_then_id(self._ids, slots, exact, k))
            return out

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        """A copy of ``item_id``'s ``(dim,)`` float32 row, or None if absent."""
        with self._lock.read():
            slot = self._slot_of.get(item_id)
            return None if slot is None else self._rows()[slot].copy()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot_of

    def item_ids(self) -> list[str]:
        with self._lock.read():
            return list(self._ids)

    def memory_bytes(self) -> int:
        """The float32 rows, plus the id list, id map and id strings (CPython ``getsizeof``)."""
        with self._lock.read():
            rows = len(self._ids) * self._dim * _FLOAT32_BYTES
            maps = sys.getsizeof(self._slot_of) + sys.getsizeof(self._ids)
            return rows + maps + self._id_bytes

    def snapshot(self) -> tuple[faiss.Index, list[str], int]:
        """A consistent copy ``(faiss index, slot -> item id list, version)``.

        For mirrors (e.g. a GPU copy) that cannot follow in-place updates. Costs one copy of
        the rows, taken under the read lock.
        """
        with self._lock.read():
            return faiss.clone_index(self._faiss), list(self._ids), self._version

    # -- internals ----------------------------------------------------------------------------

    def _check_row(self, centroid: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        arr = np.asarray(centroid)
        if arr.shape != (self._dim,):
            raise ValueError(f"centroid must be ({self._dim},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("centroid has a non-finite value")
        return l2_normalize(arr)

    def _rows(self) -> npt.NDArray[np.float32]:
        """``(ntotal, dim)`` float32 view aliasing FAISS's storage (caller holds the lock).

        Re-derived on every use: an ``add`` may reallocate the storage and move it.
        """
        n = self._faiss.ntotal
        if n == 0:
            return np.empty((0, self._dim), dtype=np.float32)
        flat = faiss.rev_swig_ptr(self._faiss.get_xb(), n * self._dim)
        rows: npt.NDArray[np.float32] = flat.reshape(n, self._dim)
        return rows

    def _search_faiss(
        self, q: npt.NDArray[np.float32], want: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        scores, slots = self._faiss.search(q, want)
        return scores, slots
