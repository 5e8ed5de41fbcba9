"""Original image bytes through the HTTP API: kept content-addressed, once per content, for as
long as some image references them, and never for a rejected request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "blobs"  # the service fixture's data_dir, blobs beside the store


def blob_path(blob_dir: Path, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    return blob_dir / digest[:2] / digest[2:4] / digest


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temporary ones too) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def enroll(client: httpx.Client, item: str, blobs: list[bytes], status: int = 201) -> list[str]:
    files = [("images", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(blobs)]
    r = client.post(f"/items/{item}/images", files=files)
    assert r.status_code == status, r.text
    ids: list[str] = r.json()["image_ids"]
    return ids


def test_enrolled_bytes_are_kept_by_content_hash(
    client: httpx.Client, photo_views: dict[str, list[bytes]], blob_dir: Path
) -> None:
    a, b = photo_views["camera"][:2]
    enroll(client, "cam", [a, b])
    assert tree(blob_dir) == {
        str(blob_path(blob_dir, a).relative_to(blob_dir)): a,
        str(blob_path(blob_dir, b).relative_to(blob_dir)): b,
    }


def test_shared_bytes_are_stored_once_and_kept_until_the_last_reference_goes(
    client: httpx.Client, photo_views: dict[str, list[bytes]], blob_dir: Path
) -> None:
    shared, own = photo_views["rocket"][:2]
    (first,) = enroll(client, "one", [shared])
    enroll(client, "two", [shared, own])
    enroll(client, "two", [shared], status=200)  # a re-send is no new reference either
    assert sorted(tree(blob_dir).values()) == sorted([shared, own])

    # "two" still references the shared bytes after "one" goes.
    assert client.delete(f"/items/one/images/{first}").status_code == 204
    assert blob_path(blob_dir, shared).read_bytes() == shared
    # The last reference goes with its item.
    assert client.delete("/items/two").status_code == 204
    assert tree(blob_dir) == {}


def test_deleting_an_image_releases_only_its_own_bytes(
    client: httpx.Client, photo_views: dict[str, list[bytes]], blob_dir: Path
) -> None:
    a, b = photo_views["coffee"][:2]
    ids = enroll(client, "mug", [a, b])
    assert client.delete(f"/items/mug/images/{ids[0]}").status_code == 204
    assert tree(blob_dir) == {str(blob_path(blob_dir, b).relative_to(blob_dir)): b}


def test_a_rejected_enrollment_leaves_the_blob_directory_unchanged(
    client: httpx.Client, photo_views: dict[str, list[bytes]], blob_dir: Path
) -> None:
    kept = photo_views["china"][0]
    enroll(client, "kept", [kept])
    before = tree(blob_dir)
    fresh1, fresh2 = photo_views["china"][1:3]
    files = [
        ("images", ("ok1.jpg", fresh1, "image/jpeg")),
        ("images", ("bad.jpg", fresh1[: len(fresh1) // 3], "image/jpeg")),  # truncated
        ("images", ("ok2.jpg", fresh2, "image/jpeg")),
    ]
    r = client.post("/items/kept/images", files=files)
    assert r.status_code == 422 and "images[1]" in r.json()["detail"]
    assert tree(blob_dir) == before
    assert client.get("/items/kept").json()["image_count"] == 1
