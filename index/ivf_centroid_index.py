"""Approximate item-centroid index: FAISS IVF candidates, re-ranked exactly.

Layout:

* Every item's unit-norm float32 ``(dim,)`` row lives in this class's own slot store (blocks of
  ``BLOCK_ROWS`` rows, so growth never copies the whole gallery). A removed item's slot goes
  on a free list and is reused by the next new item; the FAISS id of an item is its slot
  (int64), so ids stay dense and ``slot -> item id`` is a list lookup.
* Below ``min_train_items`` items (and before the first training) searches are exact: a
  float32 matrix product over the slot store, i.e. a flat index.
* From then on a FAISS IVF (inner-product coarse quantizer trained by spherical k-means on a
  sample of ``train_points_per_list x nlist`` rows; fp16 codes by default) holds every item,
  with a hashtable direct map, so an update or a remove by id is a hashtable lookup plus one
  quantizer assignment, never a scan of the gallery. New items go into the live IVF at once,
  so every write is visible to the next search.
* A search probes ``nprobe`` lists for ``k x refine`` candidates (widened while the last one
  could tie the cut), then recomputes every candidate's score in float64 from the stored
  float32 row and orders by ``(-score, item id)``. Returned scores are therefore exact
  cosines and ties follow the flat index's rule among the candidates; only which items become
  candidates is approximate.
* When the gallery has grown past ``retrain_growth x`` its size at the last training, the
  coarse quantizer is retrained and the IVF rebuilt aside (in a background thread unless
  ``background_retrain=False``). Searches and writes go on meanwhile; writes made during the
  retrain are replayed into the new IVF before it is swapped in.

**Filtered search** (``search(..., where=terms)``): the slot store keeps each item's terms and
an inverted map term -> slots (``index/item_terms.py``). The matching slots are intersected
first; then

* untrained, or at most ``max(prefilter_min_rows, prefilter_fraction x len(self))`` matching
  (the fraction defaults to ``nprobe / nlist``, the share of the gallery one IVF search scans
  anyway): the matching rows alone are scored, exactly (``index/filtered_top_k.py``).
  ``bench/filtered_index_search.py`` (50k x 1280, 32 of 256 lists, one thread; median ms and
  recall@10, pre-filter vs widened IVF): 5 % matching 9 ms exact vs 24 ms at 0.935, 10 % (near
  the 12.5 % cut) 23 ms exact vs 16 ms at 0.915, 20 % widened 6 ms at 0.975;
* otherwise the IVF search is widened: ``k x refine / selectivity`` candidates, x4 per pass,
  until ``k x refine`` matching ones cover the ties at the cut, then re-ranked exactly; it
  probes ``nprobe / sqrt(selectivity)`` lists (at most all), since each list holds fewer
  matching items than items: at a selectivity ``f`` that scans ``f^-1/2 x nprobe / nlist`` of
  the gallery, no more than the ``f`` a pre-filter would gather while ``f >= nprobe / nlist``.
  Recall is the approximate index's own: a matching item outside the probed lists is missed,
  as it would be unfiltered (tests: recall@10 against brute force, 4000 clustered items, 8 of
  64 lists: 0.965 at 25 % matching and 0.995 at 50 %, where probing only ``nprobe`` lists gave
  0.914 and 0.994). When the probed lists hold fewer than ``k`` matching items though more
  exist, that query is answered by the exact pre-filter instead, so a filtered search returns
  ``k`` items unless fewer match.

``exact_search`` takes the same filter and always scores the matching rows exactly.

Thread safety follows ``FlatCentroidIndex``: searches share the read side of a
writer-preferring ``ReadWriteLock``, writes take the write side. ``GpuSearchMirror`` does not
cover this index (it mirrors ``FlatCentroidIndex.snapshot``); the IVF runs on the CPU.
"""

from __future__ import annotations

import math
import mmap
import sys
import threading
from collections.abc import Iterable
from typing import Literal

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
from index.item_terms import NO_TERMS, TermPostings, check_terms, check_where
from index.rebuild_item import RebuildItem, split_rebuild_item
from index.rw_lock import ReadWriteLock
from index.tie_aware_top_k import (
    candidates_covering_ties,
    float32_dot_slack,
    rank_by_score_then_id,
)

BLOCK_SHIFT = 12
BLOCK_ROWS = 1 << BLOCK_SHIFT
_BLOCK_MASK = BLOCK_ROWS - 1

# Rows handed to FAISS ``add`` at once while (re)building the IVF: bounds the temporary copy.
ADD_CHUNK_ROWS = 16384

# Per-entry overhead of FAISS's direct-map hashtable (std::unordered_map<idx_t, idx_t> node
# plus bucket), and the int64 id FAISS keeps beside each code; used by ``memory_bytes``.
_HASHTABLE_ENTRY_BYTES = 40
_ID_BYTES = 8
_FLOAT32_BYTES = 4

# A filtered search of a trained index scores the matching rows exactly when at most this many
# match, whatever the fraction (see the module docstring): about a millisecond at D = 1280
# (index/flat_centroid_index.py has the measurements).
PREFILTER_MIN_ROWS = 1024

Codes = Literal["sq8", "fp16", "flat"]
_SCALAR_QUANTIZERS = {
    "sq8": faiss.ScalarQuantizer.QT_8bit,
    "fp16": faiss.ScalarQuantizer.QT_fp16,
}


def auto_nlist(n: int) -> int:
    """The number of IVF lists for ``n`` items: the power of two nearest ``sqrt(n)``, >= 1."""
    if n < 2:
        return 1
    return int(2 ** round(math.log2(math.sqrt(n))))


def _ivf_drop(ivf: faiss.IndexIVF, slot: int) -> None:
    """Remove ``slot``'s IVF entry if present: a hashtable lookup, no scan of the lists."""
    # faiss's wrapper turns an id array into an IDSelectorArray (the one selector a hashtable
    # direct map accepts); its stubs know only IDSelector.
    ivf.remove_ids(np.array([slot], dtype=np.int64))  # type: ignore[arg-type]


def _ivf_add_one(ivf: faiss.IndexIVF, slot: int, row: npt.NDArray[np.float32]) -> None:
    """Add one ``(dim,)`` float32 row as id ``slot``: assign, encode, append, map.

    What ``add_with_ids`` does for one row, without its OpenMP parallel region: on 2 shared
    cores, waking a second thread for a single row cost up to ~15 ms at the p99 of updates
    (bench/approximate_index.py). The single-query quantizer search and one-row encode run
    on the calling thread.
    """
    x = np.ascontiguousarray(row[np.newaxis, :], dtype=np.float32)
    _, lists = ivf.quantizer.search(x, 1)
    list_nos = np.ascontiguousarray(lists.reshape(1), dtype=np.int64)
    code = np.empty(int(ivf.code_size), dtype=np.uint8)
    ivf.encode_vectors(1, faiss.swig_ptr(x), faiss.swig_ptr(list_nos), faiss.swig_ptr(code))
    list_no = int(list_nos[0])
    # ``InvertedLists.add_entry`` is C++ API the stubs leave out; ``invlists`` is set once
    # an IVF is constructed.
    offset = ivf.invlists.add_entry(list_no, slot, faiss.swig_ptr(code))  # type: ignore[union-attr]
    ivf.direct_map.add_single_id(slot, list_no, offset)
    ivf.ntotal += 1


class IvfCentroidIndex:
    """Item id (``str``) → unit-norm ``(dim,)`` float32 centroid; IVF search, exact re-rank.

    Parameters (all fixed for the life of the index):

    * ``nlist``: IVF lists; None picks ``auto_nlist(n)`` at each training (so a retrain after
      growth also refines the partition).
    * ``nprobe``: lists probed per query (clamped to ``nlist``). Recall rises with it, and so
      does the search cost.
    * ``refine``: candidates fetched per result (``k x refine``) before the exact re-rank.
    * ``min_train_items``: below this many items no IVF is trained and search is exact.
    * ``train_points_per_list``: k-means sample size is ``min(n, this x nlist)``.
    * ``retrain_growth``: retrain when ``len(self) > retrain_growth x`` the size at the last
      training (> 1; growth only: shrinking keeps the trained lists, which stay correct).
    * ``codes``: how the IVF stores rows, beside the float32 rows kept for the re-rank:
      ``"fp16"`` (2 bytes per dimension), ``"sq8"`` (1 byte; its coarser candidate scores
      lose near-duplicates on tight clusters that even ``refine=4`` does not recover, see
      the tests) or ``"flat"`` (float32: twice the float32 memory in all).
    * ``background_retrain``: run growth-triggered retrains in a thread (the write that
      crosses the threshold does not wait); False runs them inside that write's call, after
      its lock is released.
    * ``seed``: k-means and sampling seed, for reproducible partitions.
    * ``prefilter_fraction``, ``prefilter_min_rows``: a filtered search matching at most
      ``max(prefilter_min_rows, prefilter_fraction x len(self))`` items scores them exactly
      instead of widening the IVF search; ``prefilter_fraction=None`` means ``nprobe / nlist``
      of the serving IVF.
    """

    def __init__(
        self,
        dim: int,
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        refine: int = 4,
        min_train_items: int = 20_000,
        train_points_per_list: int = 40,
        retrain_growth: float = 2.0,
        codes: Codes = "fp16",
        background_retrain: bool = True,
        seed: int = 0,
        prefilter_fraction: float | None = None,
        prefilter_min_rows: int = PREFILTER_MIN_ROWS,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if nlist is not None and nlist < 1:
            raise ValueError(f"nlist must be >= 1, got {nlist}")
        if nprobe < 1 or refine < 1 or train_points_per_list < 1:
            raise ValueError("nprobe, refine and train_points_per_list must be >= 1")
        if min_train_items < 1:
            raise ValueError(f"min_train_items must be >= 1, got {min_train_items}")
        if retrain_growth <= 1.0:
            raise ValueError(f"retrain_growth must be > 1, got {retrain_growth}")
        if codes not in ("sq8", "fp16", "flat"):
            raise ValueError(f"codes must be 'sq8', 'fp16' or 'flat', got {codes!r}")
        if prefilter_fraction is not None and not 0.0 <= prefilter_fraction <= 1.0:
            raise ValueError(f"prefilter_fraction must be in [0, 1], got {prefilter_fraction}")
        if prefilter_min_rows < 0:
            raise ValueError(f"prefilter_min_rows must be >= 0, got {prefilter_min_rows}")
        self._prefilter_fraction = prefilter_fraction
        self._prefilter_min_rows = prefilter_min_rows
        self._dim = dim
        self._nlist = nlist
        self._nprobe = nprobe
        self._refine = refine
        self._min_train_items = min_train_items
        self._train_points_per_list = train_points_per_list
        self._retrain_growth = retrain_growth
        self._codes: Codes = codes
        self._background_retrain = background_retrain
        self._seed = seed
        self._slack = float32_dot_slack(dim)
        self._lock = ReadWriteLock()
        self._version = 0
        self._store = _SlotStore(dim)
        self._ivf: faiss.IndexIVF | None = None
        self._trained_at = 0
        self._trainings = 0
        # Bumped by ``rebuild``: a retrain started on older content must not be swapped in.
        self._generation = 0
        # Slots written while a retrain builds its IVF aside; None when no retrain runs.
        self._dirty: set[int] | None = None
        self._retrain_mutex = threading.Lock()
        self._retrain_thread: threading.Thread | None = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def version(self) -> int:
        """Incremented by every successful mutation (upsert, remove, rebuild); not by retrains."""
        return self._version

    @property
    def trained(self) -> bool:
        """True once an IVF serves searches (False: exact search over the slot store)."""
        return self._ivf is not None

    @property
    def trainings(self) -> int:
        """How many IVFs have been trained and swapped in so far (rebuilds included)."""
        return self._trainings

    @property
    def trained_at(self) -> int:
        """Gallery size when the serving IVF was trained (0 while untrained)."""
        return self._trained_at

    @property
    def nlist(self) -> int:
        """Lists of the serving IVF (0 while untrained)."""
        ivf = self._ivf
        return 0 if ivf is None else int(ivf.nlist)

    # -- writes -------------------------------------------------------------------------------

    def upsert(
        self,
        item_id: str,
        centroid: npt.NDArray[np.floating],
        terms: frozenset[str] = NO_TERMS,
    ) -> None:
        """Insert or overwrite ``item_id``'s row with ``centroid`` ``(dim,)``, L2-normalised,
        and its filter ``terms`` (replacing the old ones).

        Visible to the next search. Cost: one row write plus, when trained, one hashtable
        remove and one IVF add (a quantizer assignment, ``nlist x dim`` flops). Raises
        ValueError on a wrong shape, a non-finite value or an empty term, TypeError on terms
        that are not a set of str.
        """
        row = self._check_row(centroid)
        new_terms = check_terms(terms)
        with self._lock.write():
            slot = self._store.put(item_id, row, new_terms)
            if self._ivf is not None:
                self._ivf_put(self._ivf, slot, row)
            if self._dirty is not None:
                self._dirty.add(slot)
            self._version += 1
            due = self._retrain_due()
        if due:
            self._start_retrain()

    def remove(self, item_id: str) -> bool:
        """Delete ``item_id`` (its slot is freed for reuse); False if it was not there."""
        with self._lock.write():
            slot = self._store.pop(item_id)
            if slot is None:
                return False
            if self._ivf is not None:
                _ivf_drop(self._ivf, slot)
            if self._dirty is not None:
                self._dirty.add(slot)
            self._version += 1
            return True

    def rebuild(self, items: Iterable[RebuildItem]) -> None:
        """Replace the whole content with ``items``: ``(item_id, centroid (dim,))`` or
        ``(item_id, centroid, terms)`` (centroids normalised here).

        Built aside (the IVF trained on the new content when it has ``min_train_items`` or
        more) and swapped in, so searches keep answering from the old content meanwhile.
        Raises ValueError on a repeated item id or a bad row; the old content is then kept.
        """
        store = _SlotStore(self._dim)
        for item in items:
            item_id, centroid, terms = split_rebuild_item(item)
            if item_id in store:
                raise ValueError(f"item id {item_id!r} appears twice in rebuild input")
            store.put(item_id, self._check_row(centroid), terms)
        ivf = self._train_and_fill(store) if len(store) >= self._min_train_items else None
        with self._lock.write():
            self._store, self._ivf = store, ivf
            self._trained_at = len(store) if ivf is not None else 0
            self._trainings += ivf is not None
            self._generation += 1
            self._version += 1

    def retrain(self) -> bool:
        """Train a new coarse quantizer on the current content and swap its IVF in.

        Blocks until done (waits for a running retrain first). Searches and writes proceed
        meanwhile; writes made during the build are replayed into the new IVF under the write
        lock just before the swap. Returns False (nothing changed) if the gallery holds fewer
        than ``min_train_items`` items or a ``rebuild`` replaced the content meanwhile.
        """
        with self._retrain_mutex:
            return self._retrain_locked()

    def join_retrain(self, timeout: float | None = None) -> None:
        """Wait for a background retrain started by a write, if one runs."""
        thread = self._retrain_thread
        if thread is not None:
            thread.join(timeout)

    # -- reads --------------------------------------------------------------------------------

    def search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Up to ``k`` ``(item_id, score)`` per query, best first, ties by item id ascending,
        among the items whose terms contain every term of ``where`` (None or empty: all).

        ``queries`` is ``(Q, dim)`` and should be unit-norm (it is not normalised here).
        Scores are exact float64 inner products with the stored float32 rows. Untrained: the
        exact top-k. Trained: the exact order of the candidates the probed lists yield (see
        the module docstring for filters). An empty index or ``k = 0`` gives Q empty lists.
        """
        return self._search(queries, k, where, exhaustive=False)

    def exact_search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """``search`` over every stored float32 row, trained or not: the exact top ``k``
        (``ExactSearchable``; a scan of the whole gallery, for sampling recall)."""
        return self._search(queries, k, where, exhaustive=True)

    def _search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None,
        *,
        exhaustive: bool,
    ) -> list[list[tuple[str, float]]]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._dim:
            raise ValueError(f"queries must be (Q, {self._dim}), got {q.shape}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        required = check_where(where)
        if k == 0:
            return [[] for _ in range(q.shape[0])]
        with self._lock.read():
            store, ivf = self._store, self._ivf
            if required is not None:
                candidates = self._filtered_candidates(store, ivf, q, k, required, exhaustive)
            elif ivf is None or exhaustive:
                candidates = candidates_covering_ties(
                    store.exact_search, q, k, len(store), self._slack
                )
            else:
                params = faiss.SearchParametersIVF()
                params.nprobe = min(self._nprobe, int(ivf.nlist))

                def ivf_search(
                    x: npt.NDArray[np.float32], want: int
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
                    scores, slots = ivf.search(x, want, params=params)
                    return scores, slots

                candidates = candidates_covering_ties(
                    ivf_search, q, k * self._refine, len(store), self._slack
                )
            q64 = q.astype(np.float64)
            out: list[list[tuple[str, float]]] = []
            for qi, (slots, _) in enumerate(candidates):
                exact = store.rows(slots).astype(np.float64) @ q64[qi]
                out.append(rank_by_score_then_id(store.ids, slots, exact, k))
            return out

    def _filtered_candidates(
        self,
        store: _SlotStore,
        ivf: faiss.IndexIVF | None,
        q: npt.NDArray[np.float32],
        k: int,
        required: frozenset[str],
        exhaustive: bool,
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Candidates of a filtered search (caller holds the read lock; module docstring)."""
        matching = store.postings.matching(required)
        if not matching:
            empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))
            return [empty for _ in range(q.shape[0])]
        m, n = len(matching), len(store)
        if ivf is None or exhaustive:
            return prefilter_candidates(store.rows, slots_array(matching), q, k, self._slack)
        nprobe = min(self._nprobe, int(ivf.nlist))
        fraction = self._prefilter_fraction
        if fraction is None:
            fraction = nprobe / int(ivf.nlist)
        if m <= max(self._prefilter_min_rows, fraction * n):
            return prefilter_candidates(store.rows, slots_array(matching), q, k, self._slack)
        params = faiss.SearchParametersIVF()
        # Fewer matching items per list: probe more lists, by 1 / sqrt(selectivity) (see the
        # module docstring), at no more rows scanned than a pre-filter would gather.
        params.nprobe = min(int(ivf.nlist), math.ceil(nprobe / math.sqrt(m / n)))

        def ivf_search(
            x: npt.NDArray[np.float32], want: int
        ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
            scores, slots = ivf.search(x, want, params=params)
            return scores, slots

        wide = k * self._refine
        candidates = candidates_covering_ties(
            ivf_search,
            q,
            wide,
            n,
            self._slack,
            keep=membership(matching),
            first_want=widened_first_want(wide, n, m),
        )
        # The probed lists ran out of matching items: answer those queries exactly.
        short = [qi for qi, (slots, _) in enumerate(candidates) if slots.size < min(k, m)]
        if short:
            exact = prefilter_candidates(
                store.rows, slots_array(matching), q[short], k, self._slack
            )
            for qi, found in zip(short, exact, strict=True):
                candidates[qi] = found
        return candidates

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        """A copy of ``item_id``'s ``(dim,)`` float32 row, or None if absent."""
        with self._lock.read():
            return self._store.get(item_id)

    def terms_of(self, item_id: str) -> frozenset[str] | None:
        """``item_id``'s filter terms, or None if absent."""
        with self._lock.read():
            return self._store.terms_of(item_id)

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._store

    def item_ids(self) -> list[str]:
        with self._lock.read():
            return self._store.item_ids()

    def memory_bytes(self) -> int:
        """Slot store rows and maps, plus the IVF's codes, ids, hashtable and centroids."""
        with self._lock.read():
            total = self._store.memory_bytes()
            ivf = self._ivf
            if ivf is not None:
                n = int(ivf.ntotal)
                total += n * (int(ivf.code_size) + _ID_BYTES + _HASHTABLE_ENTRY_BYTES)
                total += int(ivf.nlist) * self._dim * _FLOAT32_BYTES
            return total

    # -- internals ----------------------------------------------------------------------------

    def _check_row(self, centroid: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        arr = np.asarray(centroid)
        if arr.shape != (self._dim,):
            raise ValueError(f"centroid must be ({self._dim},), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("centroid has a non-finite value")
        return l2_normalize(arr)

    @staticmethod
    def _ivf_put(ivf: faiss.IndexIVF, slot: int, row: npt.NDArray[np.float32]) -> None:
        """Make ``slot``'s IVF entry ``row``: hashtable remove (a no-op if absent), then add."""
        _ivf_drop(ivf, slot)
        _ivf_add_one(ivf, slot, row)

    def _retrain_due(self) -> bool:
        """Caller holds the lock. A first training at the threshold, or growth since the last."""
        n = len(self._store)
        if self._dirty is not None or n < self._min_train_items:
            return False
        return self._ivf is None or n > self._retrain_growth * self._trained_at

    def _start_retrain(self) -> None:
        if not self._retrain_mutex.acquire(blocking=False):
            return  # one is running; it will be followed by another if growth continues
        if not self._background_retrain:
            try:
                self._retrain_locked()
            finally:
                self._retrain_mutex.release()
            return

        def run() -> None:
            try:
                self._retrain_locked()
            finally:
                self._retrain_mutex.release()

        self._retrain_thread = threading.Thread(target=run, name="ivf-retrain", daemon=True)
        self._retrain_thread.start()

    def _retrain_locked(self) -> bool:
        """Caller holds ``_retrain_mutex``."""
        with self._lock.read():
            if len(self._store) < self._min_train_items:
                return False
            store, generation = self._store, self._generation
            # Set under the read lock: no write runs now, and every later write records its
            # slot, so whatever the build below reads of a row being rewritten gets replayed.
            self._dirty = set()
        try:
            ivf = self._train_and_fill(store)
            with self._lock.write():
                if generation != self._generation:
                    return False
                for slot in sorted(self._dirty or ()):
                    row = store.row_if_live(slot)
                    if row is None:
                        _ivf_drop(ivf, slot)
                    else:
                        self._ivf_put(ivf, slot, row)
                self._ivf = ivf
                self._trained_at = len(store)
                self._trainings += 1
                return True
        finally:
            with self._lock.write():
                self._dirty = None

    def _train_and_fill(self, store: _SlotStore) -> faiss.IndexIVF:
        """A trained IVF holding every live slot of ``store`` (read without the index lock)."""
        slots = store.live_slots()
        n = slots.size
        nlist = min(self._nlist if self._nlist is not None else auto_nlist(n), n)
        rng = np.random.default_rng(self._seed + self._trainings)
        sample_n = min(n, self._train_points_per_list * nlist)
        sample = store.rows(np.sort(rng.choice(slots, size=sample_n, replace=False)))
        quantizer = faiss.IndexFlatIP(self._dim)
        ivf: faiss.IndexIVF
        if self._codes in _SCALAR_QUANTIZERS:
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer,
                self._dim,
                nlist,
                _SCALAR_QUANTIZERS[self._codes],
                faiss.METRIC_INNER_PRODUCT,
            )
            # Codes of the unit rows themselves: the same 8-bit ranges serve every list.
            ivf.by_residual = True
        else:
            ivf = faiss.IndexIVFFlat(quantizer, self._dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # FAISS only borrows the quantizer; faiss's Python wrapper keeps it alive with ``ivf``.
        ivf.cp.spherical = True  # centroids on the sphere, like the rows (cosine)
        ivf.cp.seed = self._seed + self._trainings
        # The sample size is chosen above; keep FAISS from subsampling it or warning about it.
        ivf.cp.min_points_per_centroid = 1
        ivf.cp.max_points_per_centroid = self._train_points_per_list + 1
        ivf.train(sample)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        for start in range(0, n, ADD_CHUNK_ROWS):
            chunk = slots[start : start + ADD_CHUNK_ROWS]
            ivf.add_with_ids(store.rows(chunk), chunk)
        return ivf


def _new_block(dim: int) -> npt.NDArray[np.float32]:
    """A zeroed ``(BLOCK_ROWS, dim)`` float32 block in 4 KiB pages, faulted in as rows are written.

    Not ``np.zeros``: NumPy advises the kernel to back large arrays with transparent huge pages,
    and where THP honours that advice (``madvise`` mode), the first row written into each 2 MiB
    of a block (every ~410 new items at dim 1280) waited for the kernel to find and zero a huge
    page, compacting memory when it was fragmented: up to ~18 ms of CPU inside one upsert of a
    new item (bench/approximate_index.py's insert p99). Anonymous ``mmap`` memory without the
    advice costs each new row a 4 KiB page fault instead.
    """
    buf = mmap.mmap(-1, BLOCK_ROWS * dim * _FLOAT32_BYTES)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux; also keeps THP "always" mode away
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype=np.float32).reshape(BLOCK_ROWS, dim)


class _SlotStore:
    """Float32 unit rows in fixed-size blocks, addressed by slot; item id <-> slot maps.

    Not locked: ``IvfCentroidIndex`` holds its lock around every call, except the retrain
    build, which only reads rows and tolerates torn ones (they are replayed).
    """

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._blocks: list[npt.NDArray[np.float32]] = []
        self._live = np.zeros(0, dtype=bool)
        self.ids: list[str] = []  # slot -> item id ("" for a free slot)
        self._terms: list[frozenset[str]] = []  # slot -> its item's terms
        self.postings = TermPostings()
        self._slot_of: dict[str, int] = {}
        self._free: list[int] = []
        self._id_bytes = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._slot_of

    def put(self, item_id: str, row: npt.NDArray[np.float32], terms: frozenset[str]) -> int:
        """Write ``row`` ``(dim,)`` float32 and ``terms`` as ``item_id``'s; returns its slot."""
        slot = self._slot_of.get(item_id)
        if slot is None:
            slot = self._free.pop() if self._free else self._append_slot()
            self._slot_of[item_id] = slot
            self.ids[slot] = item_id
            self._live[slot] = True
            self._id_bytes += sys.getsizeof(item_id)
        old = self._terms[slot]
        if old != terms:
            self.postings.discard(slot, old - terms)
            self.postings.add(slot, terms - old)
            self._terms[slot] = terms
        self._blocks[slot >> BLOCK_SHIFT][slot & _BLOCK_MASK] = row
        return slot

    def pop(self, item_id: str) -> int | None:
        slot = self._slot_of.pop(item_id, None)
        if slot is None:
            return None
        self.ids[slot] = ""
        self.postings.discard(slot, self._terms[slot])
        self._terms[slot] = NO_TERMS
        self._live[slot] = False
        self._free.append(slot)
        self._id_bytes -= sys.getsizeof(item_id)
        return slot

    def get(self, item_id: str) -> npt.NDArray[np.float32] | None:
        slot = self._slot_of.get(item_id)
        return (
            None if slot is None else self._blocks[slot >> BLOCK_SHIFT][slot & _BLOCK_MASK].copy()
        )

    def terms_of(self, item_id: str) -> frozenset[str] | None:
        slot = self._slot_of.get(item_id)
        return None if slot is None else self._terms[slot]

    def row_if_live(self, slot: int) -> npt.NDArray[np.float32] | None:
        if slot >= self._live.size or not self._live[slot]:
            return None
        row: npt.NDArray[np.float32] = self._blocks[slot >> BLOCK_SHIFT][slot & _BLOCK_MASK]
        return row

    def rows(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """``(len(slots), dim)`` float32 copy of the rows at ``slots`` (``(C,)`` int64, >= 0)."""
        out = np.empty((slots.size, self._dim), dtype=np.float32)
        blocks = slots >> BLOCK_SHIFT
        for b in np.unique(blocks).tolist():
            where = blocks == b
            out[where] = self._blocks[b][slots[where] & _BLOCK_MASK]
        return out

    def live_slots(self) -> npt.NDArray[np.int64]:
        """``(len(self),)`` int64 slots holding an item, ascending."""
        slots: npt.NDArray[np.int64] = np.flatnonzero(self._live).astype(np.int64)
        return slots

    def item_ids(self) -> list[str]:
        return list(self._slot_of)

    def exact_search(
        self, q: npt.NDArray[np.float32], want: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """FAISS-style exact top-``want`` of ``q`` ``(Q, dim)``: ``(Q, want)`` scores, slots.

        Free slots never appear; ``-1`` slots (score ``-inf``) pad when fewer rows are live.
        """
        nq, n_slots = q.shape[0], len(self.ids)
        scores = np.full((nq, n_slots), -np.inf, dtype=np.float32)
        for b, block in enumerate(self._blocks):
            lo = b * BLOCK_ROWS
            hi = min(lo + BLOCK_ROWS, n_slots)
            scores[:, lo:hi] = q @ block[: hi - lo].T
        scores[:, ~self._live[:n_slots]] = -np.inf
        want_eff = min(want, n_slots)
        top = np.argpartition(-scores, want_eff - 1, axis=1)[:, :want_eff]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1).astype(np.int64)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        top[~np.isfinite(top_scores)] = -1
        if want_eff < want:
            pad = want - want_eff
            top = np.pad(top, ((0, 0), (0, pad)), constant_values=-1)
            top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return top_scores, top

    def memory_bytes(self) -> int:
        rows = len(self._blocks) * BLOCK_ROWS * self._dim * _FLOAT32_BYTES
        maps = sys.getsizeof(self._slot_of) + sys.getsizeof(self.ids) + self._live.nbytes
        terms = sys.getsizeof(self._terms) + self.postings.memory_bytes()
        return rows + maps + terms + self._id_bytes + 8 * len(self._free)

    def _append_slot(self) -> int:
        slot = len(self.ids)
        if slot >> BLOCK_SHIFT == len(self._blocks):
            self._blocks.append(_new_block(self._dim))
        if slot == self._live.size:
            grown = np.zeros(max(BLOCK_ROWS, 2 * self._live.size), dtype=bool)
            grown[: self._live.size] = self._live
            self._live = grown
        self.ids.append("")
        self._terms.append(NO_TERMS)
        return slot
