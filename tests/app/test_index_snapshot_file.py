"""The snapshot file: what is written is read back (terms and attributes included); anything
not whole, or of a format before attributes, is refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from app.index_snapshot_file import SnapshotFileError, SnapshotWriter, read_snapshot


def item_terms(i: int) -> frozenset[str]:
    """Terms shared between items, unique ones, non-ASCII ones and none at all."""
    if i % 4 == 0:
        return frozenset()
    return frozenset({f"cat={'shoe' if i % 2 else 'bag'}", f"sku={i}", "city=Zürich 東京"})


def item_attributes(i: int) -> str:
    """Compact JSON texts, non-ASCII included, and none at all."""
    return "" if i % 3 == 0 else f'{{"sku":{i},"city":"Zürich 東京"}}'


def write(
    path: Path, n: int, dim: int = 4, with_terms: bool = True
) -> tuple[list[str], np.ndarray, list[int]]:
    rng = np.random.default_rng(n)
    ids = [f"item-{i}-é" for i in range(n)]  # non-ASCII ids keep their bytes
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    versions = [int(v) for v in rng.integers(0, 2**40, size=n)]
    terms = [item_terms(i) for i in range(n)]
    with SnapshotWriter(path, dim) as w:
        for start in range(0, n, 3):  # several chunks
            w.add(
                ids[start : start + 3],
                rows[start : start + 3],
                versions[start : start + 3],
                terms[start : start + 3] if with_terms else None,
                [item_attributes(i) for i in range(start, min(start + 3, n))]
                if with_terms
                else None,
            )
        assert w.commit({"version": 7, "note": "x"}) == n
    return ids, rows, versions


@pytest.mark.parametrize("n", [0, 1, 10])
def test_round_trip(tmp_path: Path, n: int) -> None:
    path = tmp_path / "snap.bin"
    ids, rows, versions = write(path, n)
    snap = read_snapshot(path)
    assert snap.meta == {"version": 7, "note": "x"}
    assert snap.ids == ids
    assert snap.versions.tolist() == versions
    assert snap.rows.shape == (n, 4) and np.array_equal(snap.rows, rows)
    assert snap.terms == [item_terms(i) for i in range(n)]
    assert snap.attributes == [item_attributes(i) for i in range(n)]
    assert [p.name for p in tmp_path.iterdir()] == ["snap.bin"]  # no temporary file left


def test_items_without_terms_read_back_empty(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    ids, _, _ = write(path, 7, with_terms=False)
    snap = read_snapshot(path)
    assert snap.terms == [frozenset()] * len(ids) and snap.attributes == [""] * len(ids)


@pytest.mark.parametrize("old", [1, 2])
def test_a_file_of_an_older_format_is_refused_so_the_service_rebuilds(
    tmp_path: Path, old: int
) -> None:
    """A file an earlier version wrote (same layout up to the ids, its own magic)."""
    path = tmp_path / "snap.bin"
    rows = np.zeros((1, 4), dtype="<f4").tobytes()
    versions, offsets, ids = struct.pack("<q", 3), struct.pack("<2q", 0, 1), b"a"
    footer = f'{{"format": {old}, "count": 1, "dim": 4}}'.encode()
    tail = struct.pack("<Q8s", len(footer), f"CRIDXSN{old}".encode())
    path.write_bytes(rows + versions + offsets + ids + footer + tail)
    with pytest.raises(SnapshotFileError, match=f"format {old}"):
        read_snapshot(path)


def test_a_flipped_term_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    write(path, 10)
    raw = bytearray(path.read_bytes())
    at = raw.index("Zürich".encode())
    raw[at] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotFileError, match="checksum"):
        read_snapshot(path)


def test_an_unfinished_writer_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    ids, _, _ = write(path, 5)
    with pytest.raises(RuntimeError), SnapshotWriter(path, 4) as w:
        w.add(["z"], np.zeros((1, 4), np.float32), [1])
        raise RuntimeError("crash before commit")
    assert read_snapshot(path).ids == ids
    assert [p.name for p in tmp_path.iterdir()] == ["snap.bin"]


def test_a_bad_chunk_is_refused(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path / "s.bin", 4) as w, pytest.raises(ValueError):
        w.add(["a", "b"], np.zeros((1, 4), np.float32), [1, 2])
    with SnapshotWriter(tmp_path / "s.bin", 4) as w, pytest.raises(ValueError, match="term"):
        w.add(["a"], np.zeros((1, 4), np.float32), [1], [frozenset(), frozenset()])


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated tail
        lambda b: b[:10],
        lambda b: b[: len(b) // 2] + b[len(b) // 2 + 4 :],  # bytes lost in the middle
        lambda b: b[:-8] + b"NOTASNAP",  # another magic
        lambda b: b"",
    ],
)
def test_a_damaged_file_is_refused(tmp_path: Path, damage: object) -> None:
    path = tmp_path / "snap.bin"
    write(path, 10)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(SnapshotFileError):
        read_snapshot(path)


def test_a_flipped_id_byte_fails_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    write(path, 10)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"item-3")
    raw[at] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotFileError, match="checksum"):
        read_snapshot(path)


def test_no_file(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFileError, match="no snapshot"):
        read_snapshot(tmp_path / "absent.bin")


def test_rows_are_read_a_slice_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "snap.bin"
    _, rows, _ = write(path, 10)
    snap = read_snapshot(path)
    assert snap.rows.shape == (10, 4) and snap.rows.dtype == np.float32
    for a, b in [(0, 10), (3, 7), (9, 10), (5, 5), (8, 99)]:
        got = snap.rows[a:b]
        assert got.dtype == np.float32 and np.array_equal(got, rows[a:b])
    assert np.array_equal(np.stack(list(snap.rows)), rows)  # iterated row by row
    with pytest.raises(IndexError):
        snap.rows[0:10:2]
    with path.open("r+b") as f:  # the rows cut short under the reader
        f.truncate(5 * 4 * 4)
    with pytest.raises(SnapshotFileError, match="end early"):
        snap.rows[0:10]
