"""Leave-one-image-out ranks against a brute force written here: every centroid rebuilt from
scratch from its item's images (the query's own item without the query), every item scored,
a full sort in which the query's own item loses its ties; on random data (Gaussian, and small
integers, which tie), and on real embeddings of the test photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from index import leave_one_out as leave_one_out_module
from index.leave_one_out import (
    BLOCK_ROWS,
    centroid_chunks_from_sums,
    leave_one_out,
    leave_one_out_ranks,
)
from tests.index.leave_one_out_oracle import Gallery, oracle_rank
from tests.tiny_artifact import write_tiny_artifact


def run_core(
    gallery: Gallery, queries: list[tuple[str, int]], rows_per_chunk: int = BLOCK_ROWS
) -> npt.NDArray[np.int64]:
    ids = sorted(gallery)
    sums = np.array([np.sum([r.astype(np.float64) for r in gallery[i]], axis=0) for i in ids])
    counts = np.array([len(gallery[i]) for i in ids], dtype=np.int64)
    code = {item: n for n, item in enumerate(ids)}
    dim = sums.shape[1]
    embeddings = np.array([gallery[i][n] for i, n in queries], dtype=np.float32).reshape(-1, dim)
    owners = np.array([code[i] for i, _ in queries], dtype=np.int64)
    chunks = centroid_chunks_from_sums(ids, sums, rows_per_chunk)
    return leave_one_out_ranks(embeddings, owners, ids, sums, counts, chunks)


def every_image(gallery: Gallery) -> list[tuple[str, int]]:
    return [(i, n) for i in sorted(gallery) if len(gallery[i]) > 1 for n in range(len(gallery[i]))]


@pytest.mark.parametrize("block_rows", [3, BLOCK_ROWS])
def test_gaussian_gallery_matches_the_oracle(
    block_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 3 inside chunks of 7: an own item's row lands anywhere in either.
    monkeypatch.setattr(leave_one_out_module, "BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(3)
    dim, items = 24, 40
    gallery: Gallery = {}
    for n in range(items):
        base = rng.normal(size=dim)
        size = int(rng.integers(1, 6))
        gallery[f"item-{n:02d}"] = [
            (base + 1.2 * rng.normal(size=dim)).astype(np.float32) for _ in range(size)
        ]
    queries = every_image(gallery)
    expected = [oracle_rank(gallery, i, n) for i, n in queries]
    # Small chunks: the count runs over several of them.
    got = run_core(gallery, queries, rows_per_chunk=7)
    assert got.tolist() == expected
    assert 1 in expected and max(expected) > 3  # the data is neither trivial nor hopeless


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.lists(st.integers(-2, 2), min_size=4, max_size=4).filter(any),
            min_size=1,
            max_size=4,
        ),
        min_size=2,
        max_size=7,
    )
)
def test_small_integer_galleries_tie_and_match_the_oracle(items: list[list[list[int]]]) -> None:
    # Integer embeddings make exact float64 sums: many identical centroids, hence ties.
    gallery: Gallery = {
        f"i{n}": [np.array(v, dtype=np.float32) for v in rows] for n, rows in enumerate(items)
    }
    queries = every_image(gallery)
    expected = [oracle_rank(gallery, i, n) for i, n in queries]
    assert run_core(gallery, queries).tolist() == expected


def test_a_tie_with_another_item_counts_against_the_query() -> None:
    x, y = np.array([1, 1, 0], np.float32), np.array([0, 1, 0], np.float32)
    # b holds a's other image only: with x left out, a's centroid is b's exactly.
    gallery: Gallery = {"a": [x, y], "b": [y], "c": [np.array([0, 0, 1], np.float32)]}
    # Renaming does not help either: "0" sorts before "b" and "z" after it.
    for name in ("a", "0", "z"):
        renamed = {name if k == "a" else k: v for k, v in gallery.items()}
        assert run_core(renamed, [(name, 0)]).tolist() == [2]


def test_result_figures_and_per_item_scores() -> None:
    e = np.eye(4, dtype=np.float32)
    # a: two images close together; b: one image near a, one far; s: single image.
    gallery: Gallery = {
        "a": [e[0] + 0.1 * e[1], e[0] + 0.2 * e[1]],
        "b": [e[0] + 0.15 * e[1], e[2]],
        "s": [e[3]],
    }
    ids = ["a", "b", "s"]
    sums = np.array([np.sum(gallery[i], axis=0, dtype=np.float64) for i in ids])
    counts = np.array([2, 2, 1], dtype=np.int64)
    queries = every_image(gallery)
    owners = np.array([ids.index(i) for i, _ in queries], dtype=np.int64)
    embeddings = np.array([gallery[i][n] for i, n in queries], dtype=np.float32)
    result = leave_one_out(
        embeddings,
        owners,
        ids,
        sums,
        counts,
        centroid_chunks_from_sums(ids, sums),
        single_image_items=1,
    )
    expected = [oracle_rank(gallery, i, n) for i, n in queries]
    assert result.ranks.tolist() == expected
    assert result.queried_images == 4
    assert result.single_image_items == 1
    reciprocal = [1 / r for r in expected]
    assert result.r_at_1 == pytest.approx(np.mean([r == 1 for r in expected]))
    assert result.mrr == pytest.approx(np.mean(reciprocal))
    (qa, qb) = result.items
    assert (qa.item_id, qa.images) == ("a", 2)
    assert qa.mrr == pytest.approx(np.mean(reciprocal[:2]))
    assert qb.mrr == pytest.approx(np.mean(reciprocal[2:]))
    assert result.worst_items(1)[0].item_id == min(result.items, key=lambda q: q.mrr).item_id


def test_an_item_seen_twice_in_the_chunks_competes_once() -> None:
    e = np.eye(3, dtype=np.float32)
    gallery: Gallery = {"a": [e[0], e[1]], "b": [e[0] + e[1]]}
    ids = sorted(gallery)
    sums = np.array([np.sum(gallery[i], axis=0, dtype=np.float64) for i in ids])
    chunks = list(centroid_chunks_from_sums(ids, sums))
    ranks = leave_one_out_ranks(
        np.array([e[0]]), np.array([0]), ids, sums, np.array([2, 1]), chunks + chunks
    )
    assert ranks.tolist() == [oracle_rank(gallery, "a", 0)] == [2]


def test_a_queried_item_needs_two_images() -> None:
    with pytest.raises(ValueError, match="fewer than 2"):
        leave_one_out_ranks(
            np.ones((1, 2), np.float32),
            np.array([0]),
            ["a"],
            np.ones((1, 2)),
            np.array([1]),
            [],
        )


@pytest.fixture(scope="module")
def photo_gallery(
    photo_views: dict[str, list[bytes]], tmp_path_factory: pytest.TempPathFactory
) -> Gallery:
    """The test photos' views through the tiny real artifact: 10 items x 6 views."""
    path: Path = write_tiny_artifact(tmp_path_factory.mktemp("tiny"))
    embedder = OnnxEmbedder(path, allow_gpu=False)
    gallery: Gallery = {}
    for name, views in photo_views.items():
        batch = np.stack([preprocess_bytes(v, embedder.spec) for v in views])
        gallery[name] = list(embedder.embed(batch))
    return gallery


def test_real_photo_embeddings_match_the_oracle(photo_gallery: Gallery) -> None:
    queries = every_image(photo_gallery)
    expected = [oracle_rank(photo_gallery, i, n) for i, n in queries]
    assert run_core(photo_gallery, queries).tolist() == expected
    # A view finds its own photo among the others most of the time, not always.
    hits = sum(r == 1 for r in expected) / len(expected)
    assert hits > 0.5


def test_a_mislabelled_image_is_a_miss(photo_gallery: Gallery) -> None:
    names = sorted(photo_gallery)
    moved = {k: list(v) for k, v in photo_gallery.items()}
    stray = moved[names[0]].pop()
    moved[names[1]].append(stray)
    queries = [(names[1], len(moved[names[1]]) - 1)]
    rank = run_core(moved, queries).tolist()
    assert rank == [oracle_rank(moved, *queries[0])]
    assert rank[0] > 1
