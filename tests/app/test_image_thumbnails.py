"""``GET /items/{item_id}/images/{image_id}?size=thumb`` over real HTTP on real photos: a small
JPEG of the picture as the decoder shows it (checked against the decoder's full image scaled
down), made once and then served from its stored blob, 304 on a matching ``If-None-Match``
(both sizes), gone with its original, swept as an orphan, copied by a backup (404 without
blobs: tests/app/test_image_download.py)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from artifact.image_decode import decode_image
from artifact.thumbnail import THUMBNAIL_LONGEST_SIDE
from model.data.sample_photos import load_photo
from tests.app.conftest import ServiceFactory

TWO_HOURS_S = 7200.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def enroll(client: httpx.Client, item: str, images: list[bytes]) -> list[str]:
    files = [("images", (f"{i}.img", b, "application/octet-stream")) for i, b in enumerate(images)]
    r = client.post(f"/items/{item}/images", files=files)
    assert r.status_code == 201, r.text
    ids: list[str] = r.json()["image_ids"]
    return ids


def thumb(client: httpx.Client, item: str, image_id: str, **headers: str) -> httpx.Response:
    return client.get(f"/items/{item}/images/{image_id}", params={"size": "thumb"}, headers=headers)


def thumbnail_path(blob_dir: Path, content_hash: str) -> Path:
    return blob_dir / "thumbnails" / content_hash[:2] / content_hash[2:4] / content_hash


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def rotated_jpeg() -> bytes:
    """A 1800x1200 real photo stored landscape with EXIF orientation 6: shown portrait."""
    photo = load_photo("coffee").resize((1800, 1200), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to show
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def small_png() -> bytes:
    """A 100x80 crop of a real photo with a transparency gradient: composited over white, and
    smaller than a thumbnail, so never enlarged."""
    crop = load_photo("chelsea").crop((150, 60, 250, 140)).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 100, dtype=np.uint8), (80, 1))
    crop.putalpha(Image.fromarray(alpha, mode="L"))
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def served(service_factory: ServiceFactory, tmp_path: Path) -> Iterator[httpx.Client]:
    with service_factory(backup_dir=tmp_path / "backups") as client:
        yield client


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "blobs"


def test_a_thumbnail_is_a_small_jpeg_of_the_picture_as_shown(
    served: httpx.Client, rotated_jpeg: bytes, small_png: bytes
) -> None:
    big_id, small_id = enroll(served, "cup", [rotated_jpeg, small_png])
    for image_id, original in ((big_id, rotated_jpeg), (small_id, small_png)):
        r = thumb(served, "cup", image_id)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/jpeg" and r.content[:3] == b"\xff\xd8\xff"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in r.headers["cache-control"]
        full = served.get(f"/items/cup/images/{image_id}")
        assert full.content == original
        assert r.headers["etag"] != full.headers["etag"] == f'"{sha(original)}"'
        got = Image.open(io.BytesIO(r.content))
        assert got.format == "JPEG" and got.mode == "RGB"
        shown = decode_image(original)  # the decoder's picture: EXIF applied, alpha on white
        if max(shown.size) > THUMBNAIL_LONGEST_SIDE:
            assert max(got.size) == THUMBNAIL_LONGEST_SIDE
        else:
            assert got.size == shown.size  # never enlarged
        assert abs(got.width / got.height - shown.width / shown.height) < 0.02
        oracle = np.asarray(shown.resize(got.size, Image.Resampling.LANCZOS), dtype=np.float64)
        error = np.abs(np.asarray(got, dtype=np.float64) - oracle).mean()
        assert error < 6.0, error
    # The rotated photo is shown portrait: 1200 wide, 1800 high, so 171 x 256.
    portrait = Image.open(io.BytesIO(thumb(served, "cup", big_id).content))
    assert portrait.size == (171, 256)


def test_it_is_made_once_and_then_served_from_its_blob(
    served: httpx.Client, blob_dir: Path, rotated_jpeg: bytes
) -> None:
    (image_id,) = enroll(served, "cup", [rotated_jpeg])
    assert not thumbnail_path(blob_dir, sha(rotated_jpeg)).exists()
    first = thumb(served, "cup", image_id)
    stored = thumbnail_path(blob_dir, sha(rotated_jpeg))
    assert stored.read_bytes() == first.content
    # Replace the stored thumbnail: a regenerated one would not be these bytes.
    marker = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(marker, format="JPEG")
    stored.write_bytes(marker.getvalue())
    again = thumb(served, "cup", image_id)
    assert again.status_code == 200 and again.content == marker.getvalue()
    assert files_under(blob_dir / "thumbnails") == [stored]


def test_if_none_match_answers_304_for_both_sizes(served: httpx.Client, small_png: bytes) -> None:
    (image_id,) = enroll(served, "cup", [small_png])
    url = f"/items/cup/images/{image_id}"
    original_tag = served.get(url).headers["etag"]
    thumb_tag = thumb(served, "cup", image_id).headers["etag"]
    for sent, size in (
        (original_tag, "original"),
        (thumb_tag, "thumb"),
        (f'W/"other", W/{thumb_tag}', "thumb"),
        ("*", "original"),
    ):
        r = served.get(url, params={"size": size}, headers={"If-None-Match": sent})
        assert r.status_code == 304, (sent, size)
        assert r.content == b"" and r.headers["etag"] in (original_tag, thumb_tag)
    # The other size's tag is not this representation's.
    assert thumb(served, "cup", image_id, **{"If-None-Match": original_tag}).status_code == 200
    r = served.get(url, headers={"If-None-Match": thumb_tag})
    assert r.status_code == 200 and r.content == small_png
    bad = served.get(url, params={"size": "huge"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    # Unknown image: 404 before any ETag is compared.
    assert served.get("/items/cup/images/nope", headers={"If-None-Match": "*"}).status_code == 404


def test_the_thumbnail_goes_with_the_last_image_holding_its_bytes(
    served: httpx.Client, blob_dir: Path, small_png: bytes
) -> None:
    (a,) = enroll(served, "one", [small_png])
    (b,) = enroll(served, "two", [small_png])
    assert thumb(served, "one", a).status_code == 200
    path = thumbnail_path(blob_dir, sha(small_png))
    assert path.is_file()
    assert served.delete(f"/items/one/images/{a}").status_code == 204
    assert path.is_file()  # "two" still holds the same bytes
    assert thumb(served, "two", b).content == path.read_bytes()
    assert served.delete("/items/two").status_code == 204
    assert files_under(blob_dir) == []


def test_sweep_removes_orphan_thumbnails_and_backup_copies_the_rest(
    served: httpx.Client, blob_dir: Path, tmp_path: Path, rotated_jpeg: bytes
) -> None:
    (image_id,) = enroll(served, "cup", [rotated_jpeg])
    made = thumb(served, "cup", image_id).content
    kept = thumbnail_path(blob_dir, sha(rotated_jpeg))
    # An orphan thumbnail, as a thumbnail made while its image was deleted leaves one.
    orphan = thumbnail_path(blob_dir, sha(b"an original no image references"))
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(made)
    old = time.time() - TWO_HOURS_S
    for path in (kept, orphan):
        os.utime(path, (old, old))

    sweep = served.post("/admin/compact").json()["blobs"]
    assert (sweep["thumbnails_removed"], sweep["orphans_removed"]) == (1, 0)
    assert kept.read_bytes() == made and not orphan.exists()

    r = served.post("/admin/backup", params={"out": "b1"})
    assert r.status_code == 200, r.text
    assert (r.json()["blobs_copied"], r.json()["thumbnails_copied"]) == (1, 1)
    copy = thumbnail_path(tmp_path / "backups" / "b1" / "blobs", sha(rotated_jpeg))
    assert copy.read_bytes() == made
