"""Exact item-centroid index: one unit-norm float32 row per item in a FAISS ``IndexFlatIP``.

Updates are O(d) whatever the index size. FAISS's own delete (``IndexIDMap2.remove_ids``)
scans every id, which measured 21–55 ms per call at 100k items (see
``bench/centroid_index_updates.py``), so this class keeps its own ``item_id -> slot`` map:

* a new item appends one row (``IndexFlat.add``; the storage grows geometrically);
* an existing item's row is overwritten in place through a numpy view of FAISS's storage;
* a removed item's row is overwritten by the last row, and the storage shrinks by one row.

Searches run in parallel with each other (FAISS releases the GIL while scanning); writes are
exclusive, through a writer-preferring ``ReadWriteLock``.

**Filtered search** (``search(..., where=terms)``, ``index/item_terms.py``): each row keeps its
item's term set, and an inverted map term -> slots follows every write (a moved row moves its
postings). A search intersects the required terms' slot sets (from the smallest up), then

* when at most ``max(prefilter_min_rows, prefilter_fraction x len(self))`` slots match, scores
  exactly those rows (gathered in blocks, ``index/filtered_top_k.py``): its cost is the
  matching set's, where a scan reads every row. A gathered row costs about three scanned ones
  (random reads, a copy, the slot set turned into an array); ``bench/filtered_index_search.py``
  at 50k x 1280 clustered rows, one query, one thread, k = 10 (median ms, pre-filter vs
  widened scan; unfiltered 42): 1 % matching 0.4 vs 54, 10 % 16 vs 41, 25 % 67 vs 67, 50 %
  113 vs 54. ``PREFILTER_FRACTION`` (0.2) sits below that crossover near a quarter.
  ``PREFILTER_MIN_ROWS`` (1024) matching rows or fewer are pre-filtered whatever the fraction
  (about a millisecond), for small indexes;
* otherwise runs the FAISS scan for about ``k / selectivity`` candidates and widens it (x4)
  until ``k`` matching ones cover the ties at the cut (or everything was scanned).

Both paths are exact: the k best matching items, fewer only if fewer match, with the same
score and tie rule as an unfiltered search.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence

import faiss
import numpy as np
import numpy.typing as npt

from index.centroid_math import l2_normalize
from index.filtered_top_k import (
    membership,
    prefilter_candidates,
    slots_array,
    widened_first_want,
)
from index.index_write_batch import IndexWrite
from index.item_terms import NO_TERMS, TermPostings, check_terms, check_where
from index.rebuild_item import RebuildItem, split_rebuild_item
from index.row_export import RowSource
from index.rw_lock import ReadWriteLock
from index.tie_aware_top_k import (
    candidates_covering_ties,
    float32_dot_slack,
    rank_by_score_then_id,
)

# Rows are buffered this many at a time during ``rebuild`` so that a bulk load from a large
# store never holds more than one chunk in Python besides the FAISS storage itself.
REBUILD_CHUNK_ROWS = 4096

# ``load_rows`` leaves room for this many more rows (at least LOAD_SPARE_MIN_ROWS) past the
# loaded ones: storage sized exactly would make the first append after a snapshot load copy
# every row into a new buffer twice the size, under the write lock (measured at 2 x 10^5 rows
# of D = 1280: 1.2 s idle, over 4 s on 2 busy cores), where a grown index has a vector's
# geometric slack already. The room is zero-filled at load, an eighth of the load's page faults.
LOAD_SPARE_FRACTION = 8
LOAD_SPARE_MIN_ROWS = 1024

# A filtered search scores only the matching rows when at most this fraction of the index
# matches, or at most PREFILTER_MIN_ROWS rows do (see the module docstring for why).
PREFILTER_FRACTION = 0.2
PREFILTER_MIN_ROWS = 1024

_FLOAT32_BYTES = 4


class FlatCentroidIndex:
    """Item id (``str``) → unit-norm ``(dim,)`` float32 centroid, exact inner-product search."""

    def __init__(
        self,
        dim: int,
        *,
        prefilter_fraction: float = PREFILTER_FRACTION,
        prefilter_min_rows: int = PREFILTER_MIN_ROWS,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not 0.0 <= prefilter_fraction <= 1.0 or prefilter_min_rows < 0:
            raise ValueError("prefilter_fraction must be in [0, 1], prefilter_min_rows >= 0")
        self._dim = dim
        self._prefilter_fraction = prefilter_fraction
        self._prefilter_min_rows = prefilter_min_rows
        self._faiss = faiss.IndexFlatIP(dim)
        self._slot_of: dict[str, int] = {}
        self._ids: list[str] = []
        self._terms: list[frozenset[str]] = []  # slot -> the item's terms
        self._postings = TermPostings()
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

    def upsert(
        self,
        item_id: str,
        centroid: npt.NDArray[np.floating],
        terms: frozenset[str] = NO_TERMS,
    ) -> None:
        """Insert or overwrite ``item_id``'s row with ``centroid`` ``(dim,)``, L2-normalised,
        and its filter ``terms`` (replacing the old ones).

        O(dim + terms): never touches other rows. Raises ValueError on a wrong shape, a
        non-finite value or an empty term, TypeError on terms that are not a set of str.
        """
        row = self._check_row(centroid)
        new_terms = check_terms(terms)
        with self._lock.write():
            self._upsert_held(item_id, row, new_terms)

    def remove(self, item_id: str) -> bool:
        """Delete ``item_id``'s row in O(dim) (the last row moves into its slot).

        Returns False (and changes nothing) if the item is not in the index.
        """
        with self._lock.write():
            return self._remove_held(item_id)

    def write_batch(self, writes: Sequence[IndexWrite]) -> None:
        """``BatchWrites.write_batch`` (index/index_write_batch.py): ``writes`` in order, as
        ``upsert``/``remove`` one by one would, in one hold of the write lock; every row and
        term set checked before anything changes."""
        checked = [
            (w.item_id, None if w.centroid is None else self._check_row(w.centroid),
             check_terms(w.terms))
            for w in writes
        ]  # fmt: skip
        if not checked:
            return
        with self._lock.write():
            for item_id, row, terms in checked:
                if row is None:
                    self._remove_held(item_id)
                else:
                    self._upsert_held(item_id, row, terms)

    def rebuild(self, items: Iterable[RebuildItem]) -> None:
        """Replace the whole content with ``items``: ``(item_id, centroid (dim,))`` or
        ``(item_id, centroid, terms)`` (centroids normalised here; the pair form has no terms).

        The new index is built aside and swapped in, so searches keep answering from the old
        content meanwhile. Raises ValueError on a repeated item id or a bad row; the old
        content is then kept.
        """
        fresh = faiss.IndexFlatIP(self._dim)
        slot_of: dict[str, int] = {}
        ids: list[str] = []
        all_terms: list[frozenset[str]] = []
        postings = TermPostings()
        chunk: list[npt.NDArray[np.float32]] = []
        for item in items:
            item_id, centroid, terms = split_rebuild_item(item)
            if item_id in slot_of:
                raise ValueError(f"item id {item_id!r} appears twice in rebuild input")
            chunk.append(self._check_row(centroid))
            postings.add(len(ids), terms)
            slot_of[item_id] = len(ids)
            ids.append(item_id)
            all_terms.append(terms)
            if len(chunk) == REBUILD_CHUNK_ROWS:
                fresh.add(np.stack(chunk))
                chunk.clear()
        if chunk:
            fresh.add(np.stack(chunk))
        id_bytes = sum(sys.getsizeof(i) for i in ids)
        with self._lock.write():
            self._faiss, self._slot_of, self._ids, self._id_bytes = fresh, slot_of, ids, id_bytes
            self._terms, self._postings = all_terms, postings
            self._version += 1

    def load_rows(
        self,
        ids: Sequence[str],
        rows: RowSource,
        terms: Sequence[frozenset[str]] | None = None,
    ) -> None:
        """``RowExport.load_rows``: ids distinct, ``rows`` ``(len(ids), dim)`` float32 and
        unit-norm (not checked row by row: they are this class's own exported rows), ``terms``
        one set per id (None: no terms). Built aside and swapped in, like ``rebuild``."""
        if rows.shape != (len(ids), self._dim) or rows.dtype != np.float32:
            raise ValueError(
                f"rows must be ({len(ids)}, {self._dim}) float32, got {rows.shape} {rows.dtype}"
            )
        if terms is not None and len(terms) != len(ids):
            raise ValueError(f"{len(terms)} term sets for {len(ids)} ids")
        slot_of = {item_id: slot for slot, item_id in enumerate(ids)}
        if len(slot_of) != len(ids):
            raise ValueError("an item id appears twice in load_rows input")
        all_terms = [NO_TERMS] * len(ids) if terms is None else [check_terms(t) for t in terms]
        postings = TermPostings()
        for slot, item_terms in enumerate(all_terms):
            if item_terms:  # most items of a store without attributes: no call per item
                postings.add(slot, item_terms)
        fresh = faiss.IndexFlatIP(self._dim)
        n = len(ids)
        if n:
            # Sized once and filled in place: one copy of the rows, no regrowth of the storage
            # (``add`` in chunks would reallocate and copy it again as it grows). Grown past
            # ``n`` first, then cut back: the vector keeps that capacity for later appends.
            spare = max(LOAD_SPARE_MIN_ROWS, n // LOAD_SPARE_FRACTION)
            fresh.codes.resize((n + spare) * self._dim * _FLOAT32_BYTES)
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
            self._terms, self._postings = all_terms, postings
            self._version += 1

    # -- reads --------------------------------------------------------------------------------

    def iter_row_chunks(
        self, rows_per_chunk: int
    ) -> Iterator[tuple[list[str], npt.NDArray[np.float32], list[frozenset[str]]]]:
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
                chunk = (
                    self._ids[start:end],
                    self._rows()[start:end].copy(),
                    self._terms[start:end],
                )
            yield chunk
            start = end

    def search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Best ``k`` items per query by inner product with the stored centroids, among the
        items whose terms contain every term of ``where`` (None or empty: all items).

        ``queries`` is ``(Q, dim)`` and should be unit-norm (then scores are cosines in
        ``[-1, 1]``); it is not normalised here. Returns Q lists of at most ``k`` distinct
        ``(item_id, score)``, best first, equal scores by item id ascending; fewer than ``k``
        only if fewer items match. Scores are recomputed in float64 from the stored float32
        rows, so equal rows give equal scores whatever path FAISS took. An empty index gives
        Q empty lists; ``k = 0`` too.
        """
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must be (Q, {self._dim}), got {q.shape}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        required = check_where(where)
        if k == 0:
            return [[] for _ in range(q.shape[0])]
        with self._lock.read():
            n = len(self._ids)
            if required is None:
                candidates = candidates_covering_ties(self._search_faiss, q, k, n, self._slack)
            else:
                matching = self._postings.matching(required)
                if not matching:
                    return [[] for _ in range(q.shape[0])]
                m = len(matching)
                if m <= max(self._prefilter_min_rows, self._prefilter_fraction * n):
                    candidates = prefilter_candidates(
                        self._gather, slots_array(matching), q, k, self._slack
                    )
                else:
                    candidates = candidates_covering_ties(
                        self._search_faiss,
                        q,
                        k,
                        n,
                        self._slack,
                        keep=membership(matching),
                        first_want=widened_first_want(k, n, m),
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

    def terms_of(self, item_id: str) -> frozenset[str] | None:
        """``item_id``'s filter terms, or None if absent."""
        with self._lock.read():
            slot = self._slot_of.get(item_id)
            return None if slot is None else self._terms[slot]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot_of

    def item_ids(self) -> list[str]:
        with self._lock.read():
            return list(self._ids)

    def memory_bytes(self) -> int:
        """The float32 rows, plus the id list, id map and id strings (CPython ``getsizeof``),
        the per-slot term list and the term postings (approximate, ``TermPostings``). Not
        counted: each item's own frozenset of terms (~216 B plus its strings when not empty)."""
        with self._lock.read():
            rows = len(self._ids) * self._dim * _FLOAT32_BYTES
            maps = sys.getsizeof(self._slot_of) + sys.getsizeof(self._ids)
            terms = sys.getsizeof(self._terms) + self._postings.memory_bytes()
            return rows + maps + self._id_bytes + terms

    def snapshot(self) -> tuple[faiss.Index, list[str], int]:
        """A consistent copy ``(faiss index, slot -> item id list, version)``.

        For mirrors (e.g. a GPU copy) that cannot follow in-place updates. Costs one copy of
        the rows, taken under the read lock.
        """
        with self._lock.read():
            return faiss.clone_index(self._faiss), list(self._ids), self._version

    # -- internals ----------------------------------------------------------------------------

    def _upsert_held(
        self, item_id: str, row: npt.NDArray[np.float32], new_terms: frozenset[str]
    ) -> None:
        """``upsert`` of a checked unit row and terms; the caller holds the write lock."""
        slot = self._slot_of.get(item_id)
        if slot is None:
            self._faiss.add(row[np.newaxis, :])
            slot = len(self._ids)
            self._slot_of[item_id] = slot
            self._ids.append(item_id)
            self._terms.append(new_terms)
            self._postings.add(slot, new_terms)
            self._id_bytes += sys.getsizeof(item_id)
        else:
            self._rows()[slot] = row
            old_terms = self._terms[slot]
            if old_terms != new_terms:
                self._postings.discard(slot, old_terms - new_terms)
                self._postings.add(slot, new_terms - old_terms)
                self._terms[slot] = new_terms
        self._version += 1

    def _remove_held(self, item_id: str) -> bool:
        """``remove``; the caller holds the write lock."""
        slot = self._slot_of.pop(item_id, None)
        if slot is None:
            return False
        last = len(self._ids) - 1
        self._postings.discard(slot, self._terms[slot])
        if slot != last:
            rows = self._rows()
            rows[slot] = rows[last]
            moved = self._ids[last]
            self._ids[slot] = moved
            self._slot_of[moved] = slot
            self._terms[slot] = self._terms[last]
            self._postings.move(last, slot, self._terms[slot])
        self._ids.pop()
        self._terms.pop()
        self._id_bytes -= sys.getsizeof(item_id)
        # IndexFlat searches ``ntotal`` rows of ``codes``; both must shrink together. The
        # vector keeps its capacity, so a later append does not reallocate.
        self._faiss.codes.resize(last * self._dim * _FLOAT32_BYTES)
        self._faiss.ntotal = last
        self._version += 1
        return True

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

    def _gather(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """A ``(len(slots), dim)`` float32 copy of the rows at ``slots`` (caller holds the lock)."""
        block: npt.NDArray[np.float32] = self._rows()[slots]
        return block

    def _search_faiss(
        self, q: npt.NDArray[np.float32], want: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        scores, slots = self._faiss.search(q, want)
        return scores, slots
