"""The service-store data source on galleries the real service enrolled over HTTP (tiny
artifact, real photos), on a real SQLite file and a real Redis namespace: items are the
classes, held-out items are those whose SHA-1 fraction is below the fraction (checked against
a SHA-1 computed here), every sample reads back the exact bytes enrolled, through the blob
directory, when asked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from artifact.image_decode import decode_image
from model.config.train_config import load_config
from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.image_dataset import ImageDataset
from model.data.sample import Sample
from model.data.service_store import read_service_store
from model.data.transforms import eval_transform
from model.engine.registries import read_dataset
from store.sqlite_store import SqliteStore
from tests import redis_server
from tests.model.data.service_gallery import (
    enroll,
    gallery_items,
    service,
    sha1_fraction,
    sha256_hex,
)
from tests.store.conftest import _drop_namespace
from tests.tiny_artifact import write_tiny_artifact

HOLDOUT = 0.4


@dataclass(frozen=True)
class Gallery:
    """Where a service keeps an enrolled gallery, and what was enrolled."""

    store: str  # SQLite file or Redis URL
    namespace: str
    blobs: Path
    items: dict[str, list[bytes]]

    def read(self, **kwargs: object) -> DatasetSplit:
        return read_service_store(self.store, str(self.blobs), namespace=self.namespace, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("tiny-artifact"))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def gallery(
    request: pytest.FixtureRequest,
    tiny_model: Path,
    photo_views: dict[str, list[bytes]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gallery]:
    """One gallery per backend for the module (tests leave it as they found it)."""
    data_dir = tmp_path_factory.mktemp("gallery") / "data"
    namespace = f"test-gallery-{uuid.uuid4().hex}"
    redis_url = redis_server.REDIS_URL if request.param == "redis" else None
    items = gallery_items(photo_views)
    with service(tiny_model, data_dir, redis_url=redis_url, redis_namespace=namespace) as c:
        enroll(c, items)
    store = redis_url or str(data_dir / "store.sqlite3")
    yield Gallery(store, namespace, data_dir / "blobs", items)
    if redis_url:
        _drop_namespace(namespace)


def by_item(samples: list[Sample]) -> dict[str, list[str]]:
    """Item → its samples' content hashes, in split order."""
    out: dict[str, list[str]] = {}
    for s in samples:
        assert s.blob is not None
        out.setdefault(s.item, []).append(s.blob.content_hash)
    return out


def test_items_are_classes_and_held_out_by_the_hash_of_their_id(gallery: Gallery) -> None:
    split = gallery.read(holdout_fraction=HOLDOUT, query_per_item=1)
    held = {item for item in gallery.items if sha1_fraction(item) < HOLDOUT}
    # The oracle's split is a real one on these ids: some items each way.
    assert 0 < len(held) < len(gallery.items), held
    hashes = {item: [sha256_hex(v) for v in views] for item, views in gallery.items.items()}

    train = by_item(split.train)
    assert set(train) == set(gallery.items) - held
    # Every kept original of a training item, in enrollment order.
    assert train == {item: hashes[item] for item in train}
    query, shown = by_item(split.query), by_item(split.gallery)
    assert set(query) == set(shown) == held
    for item in held:
        # The query: the image of smallest SHA-1 of its content hash; the rest its gallery.
        ordered = sorted(hashes[item], key=sha1_fraction)
        assert query[item] == ordered[:1]
        assert sorted(shown[item]) == sorted(ordered[1:])
    assert split.protocol == "retrieval"
    assert split.name == "service_store"

    # Each sample reads back exactly the bytes enrolled, through the blob directory.
    original = {sha256_hex(v): v for views in gallery.items.values() for v in views}
    for s in split.train + split.query + split.gallery:
        assert s.path == f"blob:{s.blob.content_hash}"  # type: ignore[union-attr]
        assert s.read_bytes() == original[s.blob.content_hash]  # type: ignore[union-attr]


def test_the_split_does_not_depend_on_enrollment_order(
    gallery: Gallery, tiny_model: Path, tmp_path: Path
) -> None:
    # The same photos enrolled into another store, items and views in reverse order.
    other_dir = tmp_path / "other"
    reversed_items = {item: views[::-1] for item, views in reversed(gallery.items.items())}
    with service(tiny_model, other_dir) as c:
        enroll(c, reversed_items)
    other = read_service_store(str(other_dir / "store.sqlite3"), holdout_fraction=HOLDOUT)
    first = gallery.read(holdout_fraction=HOLDOUT)
    again = gallery.read(holdout_fraction=HOLDOUT)
    # Read twice: the same samples in the same order.
    for part in ("train", "query", "gallery"):
        assert [s.path for s in getattr(first, part)] == [s.path for s in getattr(again, part)]
        assert [s.item for s in getattr(first, part)] == [s.item for s in getattr(again, part)]
    # Another store of the same photos: the same items and images in each part (the training
    # images in that store's enrollment order).
    for part in ("train", "query", "gallery"):
        mine, theirs = by_item(getattr(first, part)), by_item(getattr(other, part))
        assert {i: sorted(h) for i, h in mine.items()} == {
            i: sorted(h) for i, h in theirs.items()
        }, part
    assert by_item(other.train) == {i: h[::-1] for i, h in by_item(first.train).items()}


def test_images_are_read_lazily_and_decoded_as_the_service_decodes(gallery: Gallery) -> None:
    split = gallery.read(holdout_fraction=HOLDOUT)
    labels = {item: i for i, item in enumerate(sorted({s.item for s in split.train}))}
    transform = eval_transform((32, 32))
    dataset = ImageDataset(split.train, labels, transform)
    original = {sha256_hex(v): v for views in gallery.items.values() for v in views}
    for i in (0, len(dataset) - 1):
        image, label, index = dataset[i]
        sample = split.train[i]
        assert (label, index) == (labels[sample.item], i)
        expected = transform(decode_image(original[sample.blob.content_hash]))  # type: ignore[union-attr]
        assert torch.equal(image, expected)

    # Nothing was read up front: a blob removed after the listing is met when its batch asks,
    # skipped and counted, and another image of the same item takes its place.
    victim = split.train[0]
    assert victim.blob is not None
    h = victim.blob.content_hash
    blob_file = gallery.blobs / h[:2] / h[2:4] / h
    blob_file.unlink()
    try:
        dataset = ImageDataset(split.train, labels, transform)
        _, label, index = dataset[0]
        assert index != 0 and split.train[index].item == victim.item
        assert dataset.bad_paths == {f"blob:{h}"}
    finally:
        blob_file.write_bytes(original[h])


def test_the_config_names_the_store(gallery: Gallery) -> None:
    overrides = [
        "data.dataset=service_store",
        f"data.store={gallery.store}",
        f"data.store_namespace={gallery.namespace}",
        f"data.holdout_fraction={HOLDOUT}",
        "data.query_per_item=2",
    ]
    if gallery.store.startswith("redis://"):
        overrides.append(f"data.blobs={gallery.blobs}")  # beside a SQLite file: the default
    split = read_dataset(load_config(None, overrides).data)
    direct = gallery.read(holdout_fraction=HOLDOUT, query_per_item=2)
    for part in ("train", "query", "gallery"):
        assert [(s.item, s.path) for s in getattr(split, part)] == [
            (s.item, s.path) for s in getattr(direct, part)
        ]
    # Two queries per held-out item of 3 images, one gallery image.
    assert len(split.query) == 2 * len({s.item for s in split.query})
    assert len(split.gallery) == len(split.query) // 2


def test_what_is_missing_is_named(tmp_path: Path, gallery: Gallery) -> None:
    absent = tmp_path / "nowhere" / "store.sqlite3"
    with pytest.raises(DatasetError, match="no store file"):
        read_service_store(str(absent), str(gallery.blobs))
    assert not absent.parent.exists()  # nothing created
    with pytest.raises(DatasetError, match="RETRIEVAL_KEEP_BLOBS"):
        read_service_store(gallery.store, str(tmp_path / "no-blobs"), namespace=gallery.namespace)
    assert not (tmp_path / "no-blobs").exists()
    with pytest.raises(DatasetError, match=r"needs data\.blobs"):
        read_service_store(redis_server.REDIS_URL)
    with pytest.raises(DatasetError, match=r"needs data\.store"):
        read_dataset(load_config(None, ["data.dataset=service_store"]).data)
    # A store the service never wrote to: an empty gallery, said so.
    if gallery.store.startswith("redis://"):
        empty, namespace = gallery.store, f"empty-{uuid.uuid4().hex}"
    else:
        empty, namespace = str(tmp_path / "empty.sqlite3"), "cr"
        SqliteStore(Path(empty)).close()
    with pytest.raises(DatasetError, match="holds no images"):
        read_service_store(empty, str(gallery.blobs), namespace=namespace)
