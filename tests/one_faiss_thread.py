"""FAISS on one OpenMP thread, for test modules whose FAISS work is many small calls.

FAISS parallelises a search, a batch add or a k-means step over OpenMP threads (two on these
machines), and OpenMP's threads spin while they wait for the next parallel region. On galleries
of a few thousand rows the calls take microseconds to milliseconds, so with the cores shared
(the test process's own threads, other processes) the spinning costs more than the work: the
IVF index's test module took 13-16 s of CPU on two threads and 8 s on one (the loaded 2-core
machine), its wall time 30-55 s and 20 s. The count is per thread in OpenMP (the calling
thread's), so threads a test starts keep the default. The answers do not depend on the thread
count (the tests compare them with brute force); what the tests check about concurrency is
the index's own locking between Python threads, which FAISS's calls (the GIL released) still
exercise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import faiss


@contextmanager
def one_faiss_thread() -> Iterator[None]:
    """FAISS's OpenMP thread count set to 1 inside, and back to what it was after."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
