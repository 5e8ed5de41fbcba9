"""IvfCentroidIndex on real embeddings: 80 crops of the shipped photos through the default
model (embedding them is most of this module's time), expanded by the bench's own data maker
(bench/real_embedding_gallery.py), recall@10 against a brute force written here; and the
all-real set (the real views as items, held-out real views as queries). Also what the
expansion must keep of the real data: its spread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bench.real_embedding_gallery import (
    CropRecipe,
    RealEmbeddings,
    expanded_gallery,
    real_embeddings,
    within_item_spread,
)
from index.ivf_centroid_index import IvfCentroidIndex
from tests.one_faiss_thread import one_faiss_thread

pytestmark = pytest.mark.real_model

# 20 photos x 1 region = 20 real items, 3 gallery views and 1 held-out view each. Two regions
# a photo (40 items) took twice as long and gave the recall checks below the same margins.
RECIPE = CropRecipe(regions_per_photo=1, gallery_views=3, query_views=1, seed=7)
ITEMS, BASES = 20, 60
K = 10


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread() -> Iterator[None]:
    # Many small FAISS calls: OpenMP's spinning threads cost more than the work (see there).
    with one_faiss_thread():
        yield


@pytest.fixture(scope="module")
def real(default_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> RealEmbeddings:
    return real_embeddings(default_model_path, RECIPE, tmp_path_factory.mktemp("embeddings"))


def brute_force_top(
    rows: npt.NDArray[np.float32], queries: npt.NDArray[np.float32]
) -> list[set[int]]:
    """Row numbers of the exact top ``K`` inner products per query, in float64."""
    scores = queries.astype(np.float64) @ rows.astype(np.float64).T
    return [set(np.argsort(-s, kind="stable")[:K].tolist()) for s in scores]


def ivf_top(index: IvfCentroidIndex, queries: npt.NDArray[np.float32]) -> list[set[int]]:
    return [{int(item_id[4:]) for item_id, _ in hits} for hits in index.search(queries, K)]


def recall(got: list[set[int]], truth: list[set[int]]) -> float:
    return sum(len(g & t) for g, t in zip(got, truth, strict=True)) / (K * len(truth))


def build(rows: npt.NDArray[np.float32], nlist: int, nprobe: int) -> IvfCentroidIndex:
    index = IvfCentroidIndex(
        rows.shape[1], nlist=nlist, nprobe=nprobe, min_train_items=50, background_retrain=False
    )
    index.rebuild((f"item{i}", row) for i, row in enumerate(rows))
    assert index.trained and index.nlist == nlist
    return index


def test_the_real_embeddings_have_neighbours_to_find(real: RealEmbeddings) -> None:
    """The premise of the protocol: a held-out view's exact neighbours are views of its own
    region far more often than chance (3 of 60 gallery views are its own)."""
    assert real.views.shape == (ITEMS, 4, 1280) and real.embed_s > 0
    np.testing.assert_allclose(np.linalg.norm(real.views, axis=2), 1.0, atol=1e-5)
    top = brute_force_top(real.gallery(), real.held_out())
    own = [set(range(3 * item, 3 * item + 3)) for item in range(ITEMS)]
    hit_rate = sum(bool(t & o) for t, o in zip(top, own, strict=True)) / ITEMS
    assert hit_rate >= 0.7


def test_the_cache_returns_the_same_embeddings_without_the_model(
    real: RealEmbeddings, default_model_path: Path
) -> None:
    again = real_embeddings(default_model_path, RECIPE, real.cache_file.parent)
    assert again.embed_s == 0 and again.cache_file == real.cache_file
    np.testing.assert_array_equal(again.views, real.views)
    other = CropRecipe(regions_per_photo=3, gallery_views=3, query_views=1, seed=8)
    assert other.digest() != RECIPE.digest()


def test_spread_is_the_pooled_within_item_standard_deviation(real: RealEmbeddings) -> None:
    views = real.gallery_views.astype(np.float64)
    # Oracle: per item, numpy's unbiased variance around the item's mean; then the mean over
    # items (every item has the same number of views).
    per_item = np.stack([np.var(views[i], axis=0, ddof=1) for i in range(views.shape[0])])
    np.testing.assert_allclose(
        within_item_spread(real.gallery_views), np.sqrt(per_item.mean(0)), rtol=1e-5
    )


def test_expanded_items_of_one_base_lie_as_far_apart_as_real_views_of_one_item(
    real: RealEmbeddings,
) -> None:
    data = expanded_gallery(real, items=600, items_per_base=10, seed=3)
    assert data.centres.shape == (BASES, 1280) and data.items == 600
    rows = data.chunk(0)
    assert rows.shape == (600, 1280) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows, data.chunk(0))  # regenerated, never stored
    # Each item's base is the centre it is closest to (the noise is far smaller than the
    # distance between different views).
    base = np.argmax(rows @ data.centres.T, axis=1)
    views = real.gallery_views.astype(np.float64)
    real_sq = np.mean(
        [np.sum((v[a] - v[b]) ** 2) for v in views for a in range(3) for b in range(a + 1, 3)]
    )
    pairs = []
    for c in range(BASES):
        members = np.flatnonzero(base == c)
        if members.size >= 2:
            pairs.append(np.sum((rows[members[0]].astype(np.float64) - rows[members[1]]) ** 2))
    # Re-normalising after the noise shrinks distances a little (|base + noise| ~ 1.07).
    assert 0.8 * real_sq <= float(np.mean(pairs)) <= 1.05 * real_sq
    q = data.queries(50)
    assert (q @ rows.T).max() < 1.0 - 1e-4  # held out: no query is a gallery row


def test_ivf_recall_floor_on_the_expanded_real_gallery(real: RealEmbeddings) -> None:
    """Held-out perturbations (the bench's headline queries) and held-out real views, on
    1500 items around the 60 real views; ~23 items per list, so a base's items straddle
    lists."""
    data = expanded_gallery(real, items=1500, items_per_base=25, seed=1)
    rows = data.chunk(0)
    wide, narrow = build(rows, nlist=64, nprobe=8), build(rows, nlist=64, nprobe=1)
    for queries in (data.queries(100), real.held_out()):
        truth = brute_force_top(rows, queries)
        assert recall(ivf_top(wide, queries), truth) >= 0.95
        # The floor is not vacuous: one list of 64 loses neighbours on the same data.
        assert recall(ivf_top(narrow, queries), truth) < 0.95


def test_ivf_recall_floor_on_the_all_real_set(real: RealEmbeddings) -> None:
    rows, queries = real.gallery(), real.held_out()
    truth = brute_force_top(rows, queries)
    assert recall(ivf_top(build(rows, nlist=16, nprobe=8), queries), truth) >= 0.95
    assert recall(ivf_top(build(rows, nlist=16, nprobe=1), queries), truth) < 0.95
