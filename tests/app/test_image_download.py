"""GET /items/{item_id}/images/{image_id} over real HTTP, on both blob backends: the original
bytes; 404 only when the store has no such image; 503 with Retry-After when the store references
it but this replica cannot read its blob (backend down, blob missing here). An enrollment whose
blob write fails is a 503 before the store commit, and stores nothing."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from store.s3_blob_store import S3BlobStore
from tests.app.conftest import ServiceFactory
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

# Short, so the outage is answered quickly; loose enough for a busy machine's moto.
S3_TIMEOUT_S = 2.0


def enroll(client: httpx.Client, item: str, images: list[bytes]) -> httpx.Response:
    files = [("images", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(images)]
    return client.post(f"/items/{item}/images", files=files)


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["Retry-After"]) >= 1
    assert "see the service log" in r.json()["detail"] or "cannot read" in r.json()["detail"]


def assert_original(r: httpx.Response, data: bytes) -> None:
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert "immutable" in r.headers["cache-control"]


@pytest.fixture
def photos(photo_views: dict[str, list[bytes]]) -> list[bytes]:
    return photo_views["camera"][:3]


def test_directory_backend(
    service_factory: ServiceFactory, photos: list[bytes], tmp_path: Path
) -> None:
    blob_dir = tmp_path / "data" / "blobs"
    with service_factory() as client:
        r = enroll(client, "cam", photos[:2])
        assert r.status_code == 201, r.text
        first, second = r.json()["image_ids"]
        assert_original(client.get(f"/items/cam/images/{first}"), photos[0])
        assert_original(client.get(f"/items/cam/images/{second}"), photos[1])
        # Not in the store: 404, whatever the blobs.
        assert client.get(f"/items/cam/images/{uuid.uuid4().hex}").status_code == 404
        assert client.get(f"/items/nobody/images/{first}").status_code == 404
        # Referenced, but its file is gone from this replica's directory: 503, not 404.
        digest = hashlib.sha256(photos[0]).hexdigest()
        (blob_dir / digest[:2] / digest[2:4] / digest).unlink()
        missing = client.get(f"/items/cam/images/{first}")
        assert_unavailable(missing)
        assert "cannot read" in missing.json()["detail"]
        assert str(tmp_path) not in missing.text  # the directory is the log's, not the client's
        assert_original(client.get(f"/items/cam/images/{second}"), photos[1])
        # The shared volume not mounted (the directory is not there at all): 503 for every one.
        shutil.rmtree(blob_dir)
        assert_unavailable(client.get(f"/items/cam/images/{second}"))
        # A directory that cannot be written (here: a file where it should be): the enrollment
        # is refused before the store commit, and the store holds nothing of it.
        blob_dir.write_bytes(b"not a directory")
        refused = enroll(client, "new", photos[2:])
        assert_unavailable(refused)
        assert client.get("/items/new").status_code == 404
        assert client.get("/items/cam").json()["image_count"] == 2


def test_no_kept_originals_is_404(service_factory: ServiceFactory, photos: list[bytes]) -> None:
    with service_factory(keep_blobs=False) as client:
        r = enroll(client, "cam", photos[:1])
        (image_id,) = r.json()["image_ids"]
        assert client.get(f"/items/cam/images/{image_id}").status_code == 404
        thumb = client.get(f"/items/cam/images/{image_id}", params={"size": "thumb"})
        assert thumb.status_code == 404
        assert thumb.headers["content-type"] == "application/problem+json"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


def test_s3_backend(service_factory: ServiceFactory, photos: list[bytes], s3: S3Server) -> None:
    bucket = f"originals-{uuid.uuid4().hex[:12]}"
    settings = {
        "blob_backend": "s3",
        "s3_endpoint": s3.endpoint,
        "s3_bucket": bucket,
        "s3_prefix": "blobs/",
        "s3_region": REGION,
        "s3_access_key": ACCESS_KEY,
        "s3_secret_key": SECRET_KEY,
        "s3_timeout_s": S3_TIMEOUT_S,
    }
    with service_factory(**settings) as client:
        r = enroll(client, "cam", photos[:2])
        assert r.status_code == 201, r.text
        first, second = r.json()["image_ids"]
        assert_original(client.get(f"/items/cam/images/{first}"), photos[0])
        # The bytes are objects of the bucket, under the prefix, named by their sha256.
        direct = S3BlobStore(
            s3.endpoint, bucket, prefix="blobs/", region=REGION,
            access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        )  # fmt: skip
        assert set(direct.iter_hashes()) == {hashlib.sha256(p).hexdigest() for p in photos[:2]}
        # A thumbnail is an object too, beside them under thumbnails/, keyed by the original.
        thumb = client.get(f"/items/cam/images/{first}", params={"size": "thumb"})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        thumbnails = direct.derived("thumbnails")
        assert thumbnails.get(hashlib.sha256(photos[0]).hexdigest()) == thumb.content
        assert direct.count() == 2 and thumbnails.count() == 1
        info = client.get("/info").text
        assert SECRET_KEY not in info and ACCESS_KEY not in info

        s3.stop()  # the bucket's server is down
        start = time.monotonic()
        down = client.get(f"/items/cam/images/{second}")
        assert_unavailable(down)
        assert time.monotonic() - start < 2 * S3_TIMEOUT_S + 2
        assert SECRET_KEY not in down.text and s3.endpoint not in down.text
        # A write while it is down: 503 before the store commit, nothing stored.
        assert_unavailable(enroll(client, "new", photos[2:]))
        assert client.get("/items/new").status_code == 404
        assert client.get("/items/cam").json()["image_count"] == 2
        # Deleting an image still commits: its blob is left for the sweep, not a 503.
        assert client.delete(f"/items/cam/images/{second}").status_code == 204

        s3.start()  # back, but empty (moto keeps objects in memory): the blob is lost
        lost = client.get(f"/items/cam/images/{first}")
        assert_unavailable(lost)
        assert "cannot read" in lost.json()["detail"]
        assert enroll(client, "new", photos[2:]).status_code == 201
        (new_id,) = client.get("/items/new").json()["image_ids"]
        assert_original(client.get(f"/items/new/images/{new_id}"), photos[2])


def test_a_stalled_bucket_fails_the_enrollment_within_the_s3_timeout(
    service_factory: ServiceFactory, photos: list[bytes]
) -> None:
    # Connections are accepted (by the kernel's backlog) and never answered.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        settings = {"blob_backend": "s3", "s3_endpoint": endpoint, "s3_bucket": "stalled"}
        with service_factory(**settings, s3_timeout_s=0.5) as client:
            start = time.monotonic()
            refused = enroll(client, "cam", photos[:1])
            took = time.monotonic() - start
            assert_unavailable(refused)
            # The blob backend's own 503, ahead of the store call's deadline (1.5 s), which
            # would have said the write's outcome is unknown.
            assert "blob backend" in refused.json()["detail"], refused.text
            assert took < 1.5, took
            assert client.get("/items/cam").status_code == 404
            assert client.get("/readyz").status_code == 200  # the store is fine
