"""BlobStore on real photo bytes: layout, idempotent put, hash check, delete, count."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from store.blob_store import BlobStore


def png(array: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [png(data.chelsea()), png(data.coffee()), png(data.camera())]


def test_put_get_delete_round_trip(tmp_path: Path, photos: list[bytes]) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    hashes = [hashlib.sha256(p).hexdigest() for p in photos]
    assert [blobs.put(h, p) for h, p in zip(hashes, photos, strict=True)] == [True] * 3
    assert blobs.put(hashes[0], photos[0]) is False
    assert blobs.count() == 3
    h = hashes[1]
    assert blobs.path_for(h) == tmp_path / "blobs" / h[:2] / h[2:4] / h
    assert blobs.get(h) == photos[1] and blobs.exists(h)
    assert blobs.delete(h) is True and blobs.delete(h) is False
    assert blobs.get(h) is None and not blobs.exists(h)
    assert blobs.count() == 2
    leftovers = [p for p in (tmp_path / "blobs").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    assert BlobStore(tmp_path / "blobs").get(hashes[2]) == photos[2]


def test_rejects_bad_hashes_and_mismatched_bytes(tmp_path: Path, photos: list[bytes]) -> None:
    blobs = BlobStore(tmp_path)
    with pytest.raises(ValueError):
        blobs.put(hashlib.sha256(photos[0]).hexdigest(), photos[1])
    with pytest.raises(ValueError):
        blobs.get("../../etc/passwd")
    with pytest.raises(ValueError):
        blobs.exists(hashlib.sha256(b"x").hexdigest().upper())
    assert blobs.count() == 0
