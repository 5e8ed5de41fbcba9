"""What an index offers to be copied out and loaded back fast (an index snapshot).

Any ``CentroidIndex`` can be copied through ``item_ids``/``get`` and loaded through
``rebuild``; one that also has these two methods avoids a Python call per item, which matters at
millions of items.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class RowSource(Protocol):
    """``(n, dim)`` float32 rows read a slice at a time (an index snapshot's rows, read from
    its file as they are copied in, so they are never all in memory twice): ``rows[a:b]`` is
    an ``(b - a, dim)`` float32 array. An ndarray is one."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def __getitem__(self, rows: slice, /) -> npt.NDArray[np.float32]: ...

    def __iter__(self) -> Iterator[Any]:
        """Row by row, each a ``(dim,)`` float32 array."""
        ...


@runtime_checkable
class RowExport(Protocol):
    def iter_row_chunks(
        self, rows_per_chunk: int
    ) -> Iterator[tuple[list[str], npt.NDArray[np.float32], list[frozenset[str]]]]:
        """The index's ``(item ids, (n, dim) float32 unit-norm rows, n term sets)`` in chunks,
        each chunk a consistent copy taken under the index's lock; writes go on between
        chunks, so an item moved meanwhile may appear twice or not at all (the caller
        reconciles by id)."""
        ...

    def load_rows(
        self,
        ids: Sequence[str],
        rows: RowSource,
        terms: Sequence[frozenset[str]] | None = None,
    ) -> None:
        """Replace the whole content by ``ids``, their ``(len(ids), dim)`` float32 rows,
        unit-norm already (rows this index exported; they are not normalised again), and their
        filter terms (one set per id; None: none). ``rows`` is read a slice at a time and
        copied in."""
        ...
