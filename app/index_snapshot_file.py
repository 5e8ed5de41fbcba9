"""The on-disk form of an index snapshot: every item's id, version, unit-norm row, filter
terms and attributes.

One file, written in one pass while the rows stream out of the index, with its table of
contents at the end (so nothing has to be known before the first row is written)::

    rows          count x dim float32, little-endian (from offset 0, so they map in place)
    versions      count int64
    offsets       count + 1 int64: item i's id is ids[offsets[i]:offsets[i + 1]]
    ids           UTF-8 bytes
    term_offsets  count + 1 int64: item i's terms are term_ids[term_offsets[i]:...[i + 1]]
    term_ids      int32 indices into the term dictionary
    dict_offsets  terms + 1 int64: term j is dict[dict_offsets[j]:dict_offsets[j + 1]]
    dict          UTF-8 bytes of the distinct terms (each stored once: items share terms)
    attr_offsets  count + 1 int64: item i's attributes are attrs[attr_offsets[i]:...[i + 1]]
    attrs         UTF-8 compact JSON of each item's attributes (empty: it has none)
    footer        JSON: sizes, offsets, CRC-32 of everything after the rows, the caller's meta
    length        8 bytes, little-endian: the footer's size
    magic         8 bytes

Format 2 (magic ``CRIDXSN2``) added the terms, format 3 (``CRIDXSN3``) the attributes, so a
restart needs no pass over the store to return them; an older file is refused like any
unreadable one, so the service rebuilds from the store and writes a format-3 snapshot.

It is written to a temporary file beside the target, fsynced and renamed over it, the directory
fsynced: a reader sees the previous snapshot or this one, whole. The rows carry no checksum
(CRC-32 of gigabytes would slow every start-up): a file that is whole by size and footer is
trusted to hold what was written.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from store.fsync_dir import fsync_dir

MAGIC = b"CRIDXSN3"
FORMAT = 3
_OLD_MAGICS = {b"CRIDXSN1": 1, b"CRIDXSN2": 2}  # formats before item terms, attributes
_PARTS = 9
_TAIL = struct.Struct("<Q8s")  # footer length, magic


class SnapshotFileError(Exception):
    """Not a readable snapshot (absent, truncated, another format): rebuild instead."""


@dataclass(frozen=True)
class SnapshotFile:
    meta: dict[str, Any]  # what the writer's caller stored beside the rows
    ids: list[str]
    versions: npt.NDArray[np.int64]  # (count,)
    rows: SnapshotRows  # (count, dim) float32, read from the file a slice at a time
    terms: list[frozenset[str]]  # (count,): each item's filter terms (equal sets shared)
    attributes: list[str]  # (count,): each item's attributes as compact JSON, "" for none


class SnapshotWriter:
    """``with SnapshotWriter(path, dim) as w: w.add(...); ...; w.commit(meta)``; leaving the
    block without ``commit`` leaves ``path`` as it was."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self._tmp = Path(tmp)
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._ids: list[bytes] = []
        self._versions: list[int] = []
        self._term_index: dict[str, int] = {}  # term -> its index in the dictionary
        self._term_ids: list[int] = []
        self._term_counts: list[int] = []
        self._attrs: list[bytes] = []
        self._done = False

    def add(
        self,
        ids: Sequence[str],
        rows: npt.NDArray[np.float32],
        versions: Sequence[int],
        terms: Sequence[frozenset[str]] | None = None,
        attributes: Sequence[str] | None = None,
    ) -> None:
        """Append ``ids`` with their ``(len(ids), dim)`` float32 rows, versions, term sets
        (None: no terms) and attributes as compact JSON text ("" or None: none)."""
        if rows.shape != (len(ids), self.dim) or len(versions) != len(ids):
            raise ValueError(f"{len(ids)} ids, rows {rows.shape}, {len(versions)} versions")
        if terms is not None and len(terms) != len(ids):
            raise ValueError(f"{len(ids)} ids, {len(terms)} term sets")
        if attributes is not None and len(attributes) != len(ids):
            raise ValueError(f"{len(ids)} ids, {len(attributes)} attribute texts")
        self._file.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
        self._ids.extend(i.encode() for i in ids)
        self._versions.extend(versions)
        if attributes is None:
            self._attrs.extend([b""] * len(ids))
        else:
            self._attrs.extend(a.encode() for a in attributes)
        if terms is None:
            self._term_counts.extend([0] * len(ids))
            return
        for item_terms in terms:
            for term in sorted(item_terms):
                self._term_ids.append(self._term_index.setdefault(term, len(self._term_index)))
            self._term_counts.append(len(item_terms))

    def commit(self, meta: dict[str, Any]) -> int:
        """Finish the file and move it into place; returns the number of items."""
        count = len(self._ids)
        versions = np.asarray(self._versions, dtype="<i8").tobytes()
        offsets = np.zeros(count + 1, dtype="<i8")
        np.cumsum([len(i) for i in self._ids], out=offsets[1:])
        offsets_bytes, ids_bytes = offsets.tobytes(), b"".join(self._ids)
        term_offsets = np.zeros(count + 1, dtype="<i8")
        np.cumsum(self._term_counts, out=term_offsets[1:])
        dictionary = [t.encode() for t in self._term_index]  # in index order (dicts keep it)
        dict_offsets = np.zeros(len(dictionary) + 1, dtype="<i8")
        np.cumsum([len(t) for t in dictionary], out=dict_offsets[1:])
        attr_offsets = np.zeros(count + 1, dtype="<i8")
        np.cumsum([len(a) for a in self._attrs], out=attr_offsets[1:])
        parts = [
            versions,
            offsets_bytes,
            ids_bytes,
            term_offsets.tobytes(),
            np.asarray(self._term_ids, dtype="<i4").tobytes(),
            dict_offsets.tobytes(),
            b"".join(dictionary),
            attr_offsets.tobytes(),
            b"".join(self._attrs),
        ]
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        footer = {
            "format": FORMAT,
            "count": count,
            "dim": self.dim,
            "sizes": [len(part) for part in parts],
            "crc32": crc,
            "meta": meta,
        }
        raw = json.dumps(footer).encode()
        for part in (*parts, raw, _TAIL.pack(len(raw), MAGIC)):
            self._file.write(part)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        self._done = True
        return count

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            self._file.close()
            self._tmp.unlink(missing_ok=True)


def read_snapshot(path: Path) -> SnapshotFile:
    """The snapshot at ``path``; ``SnapshotFileError`` if absent, not whole or of an older
    format."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size < _TAIL.size:
                raise SnapshotFileError(f"{path}: {size} bytes, too short")
            f.seek(size - _TAIL.size)
            length, magic = _TAIL.unpack(f.read(_TAIL.size))
            if magic in _OLD_MAGICS:
                raise SnapshotFileError(
                    f"{path}: format {_OLD_MAGICS[magic]} (before item attributes), not {FORMAT}"
                )
            if magic != MAGIC or length > size - _TAIL.size:
                raise SnapshotFileError(f"{path}: not an index snapshot")
            f.seek(size - _TAIL.size - length)
            footer = json.loads(f.read(length))
            if footer.get("format") != FORMAT:
                raise SnapshotFileError(f"{path}: format {footer.get('format')}, not {FORMAT}")
            count, dim = int(footer["count"]), int(footer["dim"])
            sizes = [int(n) for n in footer["sizes"]]
            if len(sizes) != _PARTS or count * dim * 4 + sum(sizes) + length + _TAIL.size != size:
                raise SnapshotFileError(f"{path}: size {size} does not match its footer")
            f.seek(count * dim * 4)
            parts = [f.read(n) for n in sizes]
    except FileNotFoundError as exc:
        raise SnapshotFileError(f"{path}: no snapshot") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotFileError(f"{path}: unreadable ({exc})") from exc
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    if crc != footer["crc32"]:
        raise SnapshotFileError(f"{path}: checksum mismatch")
    (
        versions,
        offsets_bytes,
        ids_bytes,
        term_offsets,
        term_ids,
        dict_offsets,
        dictionary,
        attr_offsets,
        attrs_bytes,
    ) = parts
    bounds: list[int] = np.frombuffer(offsets_bytes, dtype="<i8").tolist()
    ids = [ids_bytes[bounds[i] : bounds[i + 1]].decode() for i in range(count)]
    at: list[int] = np.frombuffer(attr_offsets, dtype="<i8").tolist()
    # Most items have none: one shared "" for them instead of a decode each.
    attributes = [
        attrs_bytes[at[i] : at[i + 1]].decode() if at[i + 1] > at[i] else "" for i in range(count)
    ]
    try:
        terms = _decode_terms(count, term_offsets, term_ids, dict_offsets, dictionary)
    except (ValueError, IndexError) as exc:
        raise SnapshotFileError(f"{path}: bad terms ({exc})") from exc
    return SnapshotFile(
        footer["meta"],
        ids,
        np.frombuffer(versions, dtype="<i8"),
        SnapshotRows(path, count, dim),
        terms,
        attributes,
    )


def _decode_terms(
    count: int, term_offsets: bytes, term_ids: bytes, dict_offsets: bytes, dictionary: bytes
) -> list[frozenset[str]]:
    """Each item's term set; items with the same term ids share one frozenset (and a file
    without terms costs one list, not a set per item)."""
    none: frozenset[str] = frozenset()
    ids = np.frombuffer(term_ids, dtype="<i4")
    if ids.size == 0:
        return [none] * count
    starts: list[int] = np.frombuffer(term_offsets, dtype="<i8").tolist()
    at: list[int] = np.frombuffer(dict_offsets, dtype="<i8").tolist()
    words = [dictionary[at[j] : at[j + 1]].decode() for j in range(len(at) - 1)]
    shared: dict[bytes, frozenset[str]] = {b"": none}
    out: list[frozenset[str]] = []
    for i in range(count):
        key = term_ids[4 * starts[i] : 4 * starts[i + 1]]
        found = shared.get(key)
        if found is None:
            found = shared[key] = frozenset(words[j] for j in ids[starts[i] : starts[i + 1]])
        out.append(found)
    return out


class SnapshotRows:
    """The file's ``(count, dim)`` float32 rows, read a slice at a time: ``rows[a:b]`` reads
    those rows with one ``readinto`` into a fresh array (``RowSource``, index/row_export.py);
    iterating yields them row by row, read in blocks; ``np.asarray(rows)`` reads them all.

    Read, not memory-mapped: the loader copies each row once, front to back, and a map faults
    them in a page at a time with the kernel's small fault read-ahead. On a 2-core machine
    whose page cache the store's file had filled, 10^6 rows (5.2 GB) took 320 s through a map
    and are read at the disk's sequential rate (~440 MB/s here, about 12 s) this way.
    """

    _BLOCK_ROWS = 4096  # rows per read when iterated

    def __init__(self, path: Path, count: int, dim: int) -> None:
        self.path = Path(path)
        self.shape = (count, dim)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice, /) -> npt.NDArray[np.float32]:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise IndexError("snapshot rows are read in contiguous slices")
        dim = self.shape[1]
        out = np.empty((max(0, stop - start), dim), dtype=np.float32)
        if out.size:
            with open(self.path, "rb", buffering=0) as f:
                f.seek(start * dim * 4)
                view = out.data.cast("B")
                done = 0
                while done < len(view):
                    n = f.readinto(view[done:])
                    if not n:
                        raise SnapshotFileError(f"{self.path}: rows end early")
                    done += n
        return out

    def __iter__(self) -> Iterator[npt.NDArray[np.float32]]:
        for start in range(0, self.shape[0], self._BLOCK_ROWS):
            yield from self[start : start + self._BLOCK_ROWS]

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        whole = self[0 : self.shape[0]]
        return whole if dtype is None else whole.astype(dtype)
