"""The Retriever on its own (tiny artifact, real SQLite store, real FAISS index, no HTTP), checked
against a brute-force oracle: an item's centroid is the L2-normalised mean of its images'
embeddings, and a search ranks items by cosine between the query and those centroids."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.metrics import ServiceMetrics
from app.retriever import Retriever, Upload
from app.retriever_errors import TooManyImagesError
from artifact.image_decode import ImageDecodeError, ImageTooLargeError, decode_image
from artifact.onnx_embedder import OnnxEmbedder
from index.flat_centroid_index import FlatCentroidIndex
from store.directory_blob_store import DirectoryBlobStore
from store.records import ModelIdentity
from store.sqlite_store import SqliteStore
from tests.conftest import jpeg_bytes

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "coins")
# Float32 inference, float64 oracle: one ulp-level difference per term, summed over 32 dims.
SCORE_ATOL = 1e-5

Ranking = list[tuple[str, float]]


@pytest.fixture(scope="module")
def embedder(tiny_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model_path, allow_gpu=False)


def make_retriever(
    embedder: OnnxEmbedder, root: Path, *, max_image_pixels: int = 40_000_000
) -> Retriever:
    return Retriever(
        embedder=embedder,
        store=SqliteStore(root / "store.sqlite3"),
        index=FlatCentroidIndex(embedder.embedding_dim),
        blobs=DirectoryBlobStore(root / "blobs"),
        metrics=ServiceMetrics(),
        max_image_pixels=max_image_pixels,
        max_images_per_request=4,
    )


@pytest.fixture
def retriever(embedder: OnnxEmbedder, tmp_path: Path) -> Iterator[Retriever]:
    r = make_retriever(embedder, tmp_path)
    assert r.rebuild_index() == 0
    yield r
    r.store.close()


# -- the oracle -------------------------------------------------------------------------------


def embedding(embedder: OnnxEmbedder, data: bytes) -> npt.NDArray[np.float64]:
    """One image's raw embedding, embedded alone (the retriever batches; the oracle does not)."""
    row: npt.NDArray[np.float64] = embedder.embed_images([decode_image(data)])[0].astype(np.float64)
    return row


def unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = v / np.linalg.norm(v)
    return out


def centroid(embedder: OnnxEmbedder, blobs: Sequence[bytes]) -> npt.NDArray[np.float64]:
    distinct = list(dict.fromkeys(blobs))  # re-sent bytes count once
    return unit(np.mean([embedding(embedder, b) for b in distinct], axis=0))


def ranking(
    embedder: OnnxEmbedder,
    gallery: Mapping[str, Sequence[bytes]],
    query: bytes,
    k: int,
    min_score: float | None = None,
) -> Ranking:
    q = unit(embedding(embedder, query))
    scored = [(item, float(centroid(embedder, blobs) @ q)) for item, blobs in gallery.items()]
    scored.sort(key=lambda hit: (-hit[1], hit[0]))
    return [hit for hit in scored[:k] if min_score is None or hit[1] >= min_score]


def search(retriever: Retriever, query: bytes, k: int, min_score: float | None = None) -> Ranking:
    return [(h.item_id, h.score) for h in retriever.search(query, k, min_score)]


def assert_same_ranking(got: Ranking, expected: Ranking) -> None:
    assert [item for item, _ in got] == [item for item, _ in expected]
    np.testing.assert_allclose(
        [s for _, s in got], [s for _, s in expected], rtol=0, atol=SCORE_ATOL
    )


def assert_centroid(retriever: Retriever, item: str, expected: npt.NDArray[np.float64]) -> None:
    got = retriever.index.get(item)
    assert got is not None, f"{item} is not in the index"
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def uploads(blobs: Sequence[bytes]) -> list[Upload]:
    return [Upload(f"{i}.jpg", b) for i, b in enumerate(blobs)]


def blob_tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# -- tests ------------------------------------------------------------------------------------


def test_searches_rank_items_as_the_oracle_does(
    retriever: Retriever, embedder: OnnxEmbedder, photo_views: dict[str, list[bytes]]
) -> None:
    gallery = {item: photo_views[item][:3] for item in ITEMS}
    for item, blobs in gallery.items():
        # Two calls per item: the centroid must be of all its images, not of the last call.
        retriever.enroll(item, uploads(blobs[:2]))
        retriever.enroll(item, uploads(blobs[2:]))
    for item, blobs in gallery.items():
        assert_centroid(retriever, item, centroid(embedder, blobs))
    for item in ITEMS:
        for query in photo_views[item][3:]:
            assert_same_ranking(
                search(retriever, query, k=10), ranking(embedder, gallery, query, 10)
            )
            assert_same_ranking(search(retriever, query, k=2), ranking(embedder, gallery, query, 2))


def test_min_score_cuts_the_ranking_below_it(
    retriever: Retriever, embedder: OnnxEmbedder, photo_views: dict[str, list[bytes]]
) -> None:
    gallery = {item: photo_views[item][:2] for item in ITEMS}
    for item, blobs in gallery.items():
        retriever.enroll(item, uploads(blobs))
    query = photo_views["coffee"][5]
    full = ranking(embedder, gallery, query, 10)
    # Halfway between the third and the fourth score: exactly three remain, whatever rounding.
    cut = (full[2][1] + full[3][1]) / 2
    expected = ranking(embedder, gallery, query, 10, min_score=cut)
    assert len(expected) == 3
    assert_same_ranking(search(retriever, query, k=10, min_score=cut), expected)


def test_re_sent_bytes_count_once(
    retriever: Retriever, embedder: OnnxEmbedder, photo_views: dict[str, list[bytes]]
) -> None:
    a, b, c = photo_views["rocket"][:3]
    first = retriever.enroll("rocket", uploads([a, b, a]))
    assert first.created == [True, True, False] and first.image_count == 2
    assert first.image_ids[0] == first.image_ids[2] != first.image_ids[1]
    again = retriever.enroll("rocket", uploads([b, c]))
    assert again.created == [False, True] and again.image_count == 3
    assert again.image_ids[0] == first.image_ids[1]
    assert_centroid(retriever, "rocket", centroid(embedder, [a, b, c]))
    assert retriever.store.counts() == (1, 3)


def test_deletes_recompute_the_centroid_and_drop_emptied_items(
    retriever: Retriever, embedder: OnnxEmbedder, photo_views: dict[str, list[bytes]]
) -> None:
    gallery = {item: list(photo_views[item][:3]) for item in ("chelsea", "coins", "astronaut")}
    ids = {
        item: retriever.enroll(item, uploads(blobs)).image_ids for item, blobs in gallery.items()
    }
    query = photo_views["chelsea"][4]

    retriever.delete_image("chelsea", ids["chelsea"][1])
    del gallery["chelsea"][1]
    assert_centroid(retriever, "chelsea", centroid(embedder, gallery["chelsea"]))
    assert_same_ranking(search(retriever, query, k=10), ranking(embedder, gallery, query, 10))

    retriever.delete_item("coins")
    del gallery["coins"]
    assert_same_ranking(search(retriever, query, k=10), ranking(embedder, gallery, query, 10))

    for image_id in ids["astronaut"]:  # the last one takes the item with it
        retriever.delete_image("astronaut", image_id)
    del gallery["astronaut"]
    assert "astronaut" not in retriever.index and retriever.get_item("astronaut") is None
    assert_same_ranking(search(retriever, query, k=10), ranking(embedder, gallery, query, 10))
    assert retriever.store.counts() == (1, 2)


def test_a_restart_rebuilds_the_same_index_from_the_store(
    embedder: OnnxEmbedder, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    gallery = {item: photo_views[item][:2] for item in ITEMS}
    first = make_retriever(embedder, tmp_path)
    first.rebuild_index()
    for item, blobs in gallery.items():
        first.enroll(item, uploads(blobs))
    first.store.close()
    second = make_retriever(embedder, tmp_path)
    try:
        assert second.rebuild_index() == len(ITEMS)
        query = photo_views["rocket"][4]
        assert_same_ranking(search(second, query, k=10), ranking(embedder, gallery, query, 10))
    finally:
        second.store.close()


def test_a_rejected_enrollment_leaves_no_trace(
    embedder: OnnxEmbedder, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    big = photo_views["coffee"][1]
    thumbnail = decode_image(big)
    thumbnail.thumbnail((100, 100))
    small = jpeg_bytes(thumbnail)
    # The big one is 320 px on its long side, the small one 100: the limit lies between.
    retriever = make_retriever(embedder, tmp_path, max_image_pixels=100 * 100)
    retriever.rebuild_index()
    try:
        before = (retriever.store.counts(), len(retriever.index), blob_tree(tmp_path / "blobs"))
        with pytest.raises(ImageDecodeError, match=r"images\[1\] \('1.jpg'\)"):
            retriever.enroll("x", uploads([small, b"garbage", small]))
        with pytest.raises(ImageTooLargeError, match="pixels"):
            retriever.enroll("x", uploads([big]))
        with pytest.raises(TooManyImagesError, match="limit is 4"):
            retriever.enroll("x", uploads([small] * 5))
        with pytest.raises(ImageDecodeError, match="no image"):
            retriever.enroll("x", [])
        after = (retriever.store.counts(), len(retriever.index), blob_tree(tmp_path / "blobs"))
        assert after == before == ((0, 0), 0, set())
    finally:
        retriever.store.close()


def test_a_failed_commit_takes_back_the_blobs_it_wrote(
    embedder: OnnxEmbedder, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    """Blobs are written before the store commits; a commit that fails must not leave them.

    A store claimed for another embedding size refuses every enrollment while still answering
    reads, which is what the rollback needs to tell an orphan blob from a shared one.
    """
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.claim_model_identity(ModelIdentity("other", "1", embedder.embedding_dim + 1))
    store.close()
    retriever = make_retriever(embedder, tmp_path)  # no rebuild: it would refuse the store
    blob = photo_views["china"][0]
    try:
        with pytest.raises(ValueError):
            retriever.enroll("x", uploads([blob]))
        assert not retriever.blobs.exists(hashlib.sha256(blob).hexdigest())  # type: ignore[union-attr]
        assert blob_tree(tmp_path / "blobs") == set()
        assert retriever.store.counts() == (0, 0) and len(retriever.index) == 0
    finally:
        retriever.store.close()
