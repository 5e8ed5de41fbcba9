"""The on-disk form of an index snapshot: every item's id, version and unit-norm row.

One file, written in one pass while the rows stream out of the index, with its table of
contents at the end (so nothing has to be known before the first row is written)::

    rows       count x dim float32, little-endian (from offset 0, so they map in place)
    versions   count int64
    offsets    count + 1 int64: item i's id is ids[offsets[i]:offsets[i + 1]]
    ids        UTF-8 bytes
    footer     JSON: sizes, offsets, CRC-32 of versions + offsets + ids, and the caller's meta
    length     8 bytes, little-endian: the footer's size
    magic      8 bytes

It is written to a temporary file beside the target, fsynced and renamed over it, the directory
fsynced: a reader sees the previous snapshot or this one, whole. The rows carry no checksum
(CRC-32 of gigabytes would slow every start-up): a file that is whole by size and footer is
trusted to hold what was written.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from store.fsync_dir import fsync_dir

MAGIC = b"CRIDXSN1"
FORMAT = 1
_TAIL = struct.Struct("<Q8s")  # footer length, magic


class SnapshotFileError(Exception):
    """Not a readable snapshot (absent, truncated, another format): rebuild instead."""


@dataclass(frozen=True)
class SnapshotFile:
    meta: dict[str, Any]  # what the writer's caller stored beside the rows
    ids: list[str]
    versions: npt.NDArray[np.int64]  # (count,)
    rows: npt.NDArray[np.float32]  # (count, dim), a read-only map of the file


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
        self._done = False

    def add(
        self, ids: Sequence[str], rows: npt.NDArray[np.float32], versions: Sequence[int]
    ) -> None:
        """Append ``ids`` with their ``(len(ids), dim)`` float32 rows and versions."""
        if rows.shape != (len(ids), self.dim) or len(versions) != len(ids):
            raise ValueError(f"{len(ids)} ids, rows {rows.shape}, {len(versions)} versions")
        self._file.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
        self._ids.extend(i.encode() for i in ids)
        self._versions.extend(versions)

    def commit(self, meta: dict[str, Any]) -> int:
        """Finish the file and move it into place; returns the number of items."""
        count = len(self._ids)
        versions = np.asarray(self._versions, dtype="<i8").tobytes()
        offsets = np.zeros(count + 1, dtype="<i8")
        np.cumsum([len(i) for i in self._ids], out=offsets[1:])
        offsets_bytes, ids_bytes = offsets.tobytes(), b"".join(self._ids)
        rows_end = count * self.dim * 4
        footer = {
            "format": FORMAT,
            "count": count,
            "dim": self.dim,
            "versions_offset": rows_end,
            "offsets_offset": rows_end + len(versions),
            "ids_offset": rows_end + len(versions) + len(offsets_bytes),
            "ids_bytes": len(ids_bytes),
            "crc32": zlib.crc32(ids_bytes, zlib.crc32(offsets_bytes, zlib.crc32(versions))),
            "meta": meta,
        }
        raw = json.dumps(footer).encode()
        for part in (versions, offsets_bytes, ids_bytes, raw, _TAIL.pack(len(raw), MAGIC)):
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
    """The snapshot at ``path``; ``SnapshotFileError`` if absent or not whole."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size < _TAIL.size:
                raise SnapshotFileError(f"{path}: {size} bytes, too short")
            f.seek(size - _TAIL.size)
            length, magic = _TAIL.unpack(f.read(_TAIL.size))
            if magic != MAGIC or length > size - _TAIL.size:
                raise SnapshotFileError(f"{path}: not an index snapshot")
            f.seek(size - _TAIL.size - length)
            footer = json.loads(f.read(length))
            if footer.get("format") != FORMAT:
                raise SnapshotFileError(f"{path}: format {footer.get('format')}, not {FORMAT}")
            count, dim = int(footer["count"]), int(footer["dim"])
            if footer["ids_offset"] + footer["ids_bytes"] + length + _TAIL.size != size:
                raise SnapshotFileError(f"{path}: size {size} does not match its footer")
            f.seek(footer["versions_offset"])
            versions = f.read(count * 8)
            offsets_bytes = f.read((count + 1) * 8)
            ids_bytes = f.read(footer["ids_bytes"])
    except FileNotFoundError as exc:
        raise SnapshotFileError(f"{path}: no snapshot") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotFileError(f"{path}: unreadable ({exc})") from exc
    crc = zlib.crc32(ids_bytes, zlib.crc32(offsets_bytes, zlib.crc32(versions)))
    if crc != footer["crc32"]:
        raise SnapshotFileError(f"{path}: checksum mismatch")
    bounds: list[int] = np.frombuffer(offsets_bytes, dtype="<i8").tolist()
    ids = [ids_bytes[bounds[i] : bounds[i + 1]].decode() for i in range(count)]
    return SnapshotFile(
        footer["meta"], ids, np.frombuffer(versions, dtype="<i8"), _map_rows(path, count, dim)
    )


def _map_rows(path: Path, count: int, dim: int) -> npt.NDArray[np.float32]:
    """The ``(count, dim)`` rows as a read-only map of the file, read ahead sequentially: the
    loader copies them once, front to back, so the kernel reads large blocks ahead of it
    instead of faulting in one page at a time (measured 2x faster on a cold cache)."""
    if count == 0:
        return np.empty((0, dim), dtype=np.float32)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mapped.madvise(mmap.MADV_SEQUENTIAL)
    mapped.madvise(mmap.MADV_WILLNEED, 0, count * dim * 4)
    rows: npt.NDArray[np.float32] = np.frombuffer(mapped, dtype="<f4", count=count * dim).reshape(
        count, dim
    )
    return rows
