"""The service-store data source leaves quarantined images out (real SQLite store in the
service's layout, real blob directory, real photos embedded by the tiny artifact): a stray
view of another photo, quarantined at enrollment, is in no part of the split, and the images
left out are counted in the log; released, it is read again."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.data.dataset_split import DatasetSplit
from model.data.service_store import read_service_store
from tests.quarantine_gallery import QuarantineGallery, stray_gallery
from tests.tiny_artifact import write_tiny_artifact

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


@pytest.fixture
def gallery(
    tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> Iterator[tuple[QuarantineGallery, dict[str, str]]]:
    model = write_tiny_artifact(tmp_path / "tiny-artifact")
    data = tmp_path / "data"
    data.mkdir()
    g = QuarantineGallery(data, model)  # data/store.sqlite3 beside data/blobs, as served
    strays = stray_gallery(g, photo_views, NAMES)
    yield g, strays
    g.close()


def hashes(split: DatasetSplit) -> dict[str, set[str]]:
    """Item -> the content hashes of its samples, every part."""
    out: dict[str, set[str]] = {}
    for s in split.train + split.query + split.gallery:
        assert s.blob is not None
        out.setdefault(s.item, set()).add(s.blob.content_hash)
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_quarantined_images_are_in_no_part_and_are_counted(
    gallery: tuple[QuarantineGallery, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    g, strays = gallery
    store = str(g.store.path)  # its blobs found beside it, as the service lays them out
    with caplog.at_level(logging.INFO, logger="model.data.service_store"):
        split = read_service_store(store, holdout_fraction=0.4)
    counted = {item: {r.content_hash for r in g.counted(item)} for item in NAMES}
    assert hashes(split) == counted
    stray_hashes = {sha256(g.originals[i]) for i in strays.values()}
    assert not stray_hashes & {h for hs in hashes(split).values() for h in hs}
    assert split.query and split.train  # both sides of the split are checked
    assert f"{len(NAMES)} quarantined images of {len(NAMES)} items left out" in caplog.text

    # Released: a training image again.
    g.store.set_image_quarantine("rocket", strays["rocket"], False)
    again = hashes(read_service_store(store, holdout_fraction=0.4))
    assert again["rocket"] == counted["rocket"] | {sha256(g.originals[strays["rocket"]])}
