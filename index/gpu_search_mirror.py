"""A GPU copy of a ``FlatCentroidIndex`` that serves searches while the CPU index takes writes.

FAISS GPU indexes cannot overwrite or delete rows in place and are not safe for concurrent
searches, so the CPU index stays the one that is updated, and this mirror holds a GPU copy of
a snapshot of it. The copy is refreshed from the CPU index when its version changed, at most
once per ``refresh_interval_ms`` (a burst of enrollments costs one copy, not one per write);
a search can therefore miss writes of the last ``refresh_interval_ms``. Searches are
serialised by a lock. Slots are mapped back to item ids with the id list taken with the
snapshot, so a result never names the wrong item even while the CPU index moves rows.

The copy holds no filter terms, so a filtered search (``where`` given) bypasses it and is
answered by the CPU index (exact, and current: no refresh lag). A filter that matches few items
is cheap there anyway (it scores the matching rows only); one that matches most items costs a
CPU scan.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from index.flat_centroid_index import FlatCentroidIndex
from index.item_terms import check_where
from index.tie_aware_top_k import (
    candidates_covering_ties,
    float32_dot_slack,
    rank_by_score_then_id,
)

# Copying 100k x 1280 float32 rows to a GPU takes on the order of 100 ms; refreshing at most
# 5 times a second bounds that overhead while keeping results at most 200 ms behind.
DEFAULT_REFRESH_INTERVAL_MS = 200.0

# FAISS GPU k-selection handles k <= 2048 (``GPU_MAX_SELECTION_K`` in faiss/gpu/utils/
# DeviceDefs.cuh); a search that would need more candidates is answered by the CPU index.
GPU_MAX_SELECTION_K = 2048


class _TooWideForGpu(Exception):
    pass


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and int(faiss.get_num_gpus()) > 0


class GpuSearchMirror:
    """Searches ``cpu_index`` on GPU ``device`` through a periodically refreshed copy."""

    def __init__(
        self,
        cpu_index: FlatCentroidIndex,
        device: int = 0,
        refresh_interval_ms: float = DEFAULT_REFRESH_INTERVAL_MS,
    ) -> None:
        if not gpu_available():
            raise RuntimeError("no GPU visible to faiss (or faiss built without GPU support)")
        self._cpu = cpu_index
        self._device = device
        self._interval_s = refresh_interval_ms / 1000.0
        self._resources: Any = faiss.StandardGpuResources()
        self._search_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._gpu_index: Any = None
        self._ids: list[str] = []
        self._version = -1
        self._last_refresh = -float("inf")
        self._slack = float32_dot_slack(cpu_index.dim)
        self.refresh(force=True)

    @property
    def version(self) -> int:
        """The CPU index version the GPU copy was taken at."""
        return self._version

    def refresh(self, force: bool = False) -> bool:
        """Re-copy the CPU index if it changed and the debounce interval has passed.

        ``force`` skips the interval (not the version check). Returns True if a copy was made.
        """
        with self._refresh_lock:
            if self._cpu.version == self._version:
                return False
            now = time.monotonic()
            if not force and now - self._last_refresh < self._interval_s:
                return False
            cpu_copy, ids, version = self._cpu.snapshot()
            gpu_index = faiss.index_cpu_to_gpu(self._resources, self._device, cpu_copy)
            with self._search_lock:
                self._gpu_index, self._ids, self._version = gpu_index, ids, version
            self._last_refresh = now
            return True

    def search(
        self,
        queries: npt.NDArray[np.floating],
        k: int,
        where: frozenset[str] | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Like ``FlatCentroidIndex.search`` on the last copy (scores are FAISS's float32);
        with a filter (``where`` non-empty), the CPU index's answer (module docstring)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._cpu.dim:
            raise ValueError(f"queries must be (Q, {self._cpu.dim}), got {q.shape}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if check_where(where) is not None:
            return self._cpu.search(q, k, where)
        self.refresh()
        if k == 0:
            return [[] for _ in range(q.shape[0])]
        with self._search_lock:
            gpu_index, ids = self._gpu_index, self._ids

            def search_gpu(
                x: npt.NDArray[np.float32], want: int
            ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
                if want > GPU_MAX_SELECTION_K:
                    raise _TooWideForGpu
                scores, slots = gpu_index.search(x, want)
                return scores, slots

            try:
                candidates = candidates_covering_ties(search_gpu, q, k, len(ids), self._slack)
            except _TooWideForGpu:
                candidates = None
        if candidates is None:
            return self._cpu.search(q, k)
        return [rank_by_score_then_id(ids, slots, scores, k) for slots, scores in candidates]
