"""Set queries over real HTTP (tiny artifact, real SQLite, real FAISS, the batching executor):
several photos rank items by ``normalize(sum_i w_i * e_i)`` of their raw embeddings, checked
against a brute-force oracle built from single-image embeddings; ``weights`` move the ranking as
the oracle predicts; a malformed query is a 422 problem+json before anything is decoded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.main import create_app
from app.metrics import ServiceMetrics
from app.retriever import Retriever, Upload
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from index.flat_centroid_index import FlatCentroidIndex
from store.sqlite_store import SqliteStore
from tests.app.centroid_oracle import (
    Vector,
    as_ranking,
    assert_same_ranking,
    rank,
    raw_embedding,
    unit,
    weighted_centroid,
)
from tests.app.metrics_text import metric_value
from tests.live_server import live_server

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
GALLERY_VIEWS = slice(0, 3)  # views 3..5 of each photo are queries
MAX_FILES = 4
Files = list[tuple[str, tuple[str, bytes, str]]]


@pytest.fixture(scope="module")
def embedder(tiny_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model_path, allow_gpu=False)


@pytest.fixture(scope="module")
def centroids(embedder: OnnxEmbedder, photo_views: dict[str, list[bytes]]) -> dict[str, Vector]:
    """The oracle's centroid of every enrolled item."""
    return {
        name: weighted_centroid(
            [raw_embedding(embedder, v) for v in photo_views[name][GALLERY_VIEWS]]
        )
        for name in ITEMS
    }


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_path: Path,
    photo_views: dict[str, list[bytes]],
) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("set-queries") / "data"
    settings = Settings(
        model_path=tiny_model_path, data_dir=data_dir, max_images_per_request=MAX_FILES
    )
    app = create_app(settings)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for name in ITEMS:
            r = client.post(f"/items/{name}/images", files=files(*photo_views[name][GALLERY_VIEWS]))
            assert r.status_code == 201, r.text
        yield client


def files(*views: bytes, field: str = "images") -> Files:
    return [(field, (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def search(
    client: httpx.Client, parts: Files, weights: str | None = None, k: int = len(ITEMS)
) -> httpx.Response:
    data = None if weights is None else {"weights": weights}
    return client.post("/search", params={"k": k}, files=parts, data=data)


def test_a_set_query_ranks_items_by_the_centroid_of_its_raw_embeddings(
    service: httpx.Client,
    embedder: OnnxEmbedder,
    centroids: dict[str, Vector],
    photo_views: dict[str, list[bytes]],
) -> None:
    # Two views of one photo and one of another: a query between items, so that the whole
    # ranking (not only its top) is checked.
    views = [photo_views["chelsea"][3], photo_views["chelsea"][4], photo_views["coffee"][5]]
    rows = [raw_embedding(embedder, v) for v in views]
    expected = rank(centroids, weighted_centroid(rows))
    r = search(service, files(*views))
    assert r.status_code == 200, r.text
    assert_same_ranking(as_ranking(r.json()), expected)
    # The oracle tells the rule apart from averaging normalised embeddings: the views' norms
    # differ enough that the scores would differ well beyond the tolerance.
    normalised_first = rank(centroids, weighted_centroid([unit(e) for e in rows]))
    gaps = [abs(a[1] - dict(normalised_first)[a[0]]) for a in expected]
    assert max(gaps) > 1e-3
    # A top-k cut of the same ranking; upload order does not matter without weights.
    top = search(service, files(*reversed(views)), k=2)
    assert_same_ranking(as_ranking(top.json()), expected[:2])


def test_one_file_in_images_or_in_the_deprecated_image_field_is_todays_search(
    service: httpx.Client,
    embedder: OnnxEmbedder,
    centroids: dict[str, Vector],
    photo_views: dict[str, list[bytes]],
) -> None:
    view = photo_views["rocket"][4]
    expected = rank(centroids, unit(raw_embedding(embedder, view)))
    assert expected[0][0] == "rocket"
    for field in ("images", "image"):
        r = search(service, files(view, field=field))
        assert r.status_code == 200, r.text
        assert_same_ranking(as_ranking(r.json()), expected)
    # One weight for one file only scales the query, which normalisation removes.
    assert_same_ranking(as_ranking(search(service, files(view), weights="2.5").json()), expected)


def test_weights_move_the_ranking_as_the_oracle_predicts(
    service: httpx.Client,
    embedder: OnnxEmbedder,
    centroids: dict[str, Vector],
    photo_views: dict[str, list[bytes]],
) -> None:
    cat, rocket = photo_views["chelsea"][3], photo_views["rocket"][3]
    rows = [raw_embedding(embedder, cat), raw_embedding(embedder, rocket)]
    predicted = {w: rank(centroids, weighted_centroid(rows, w)) for w in ((4, 1), (1, 4))}
    # The test only means something if the two weightings rank differently.
    assert predicted[(4, 1)][0][0] == "chelsea" and predicted[(1, 4)][0][0] == "rocket"
    for (a, b), expected in predicted.items():
        r = search(service, files(cat, rocket), weights=f" {a} ,{b}.0 ")
        assert r.status_code == 200, r.text
        assert_same_ranking(as_ranking(r.json()), expected)
    # A zero weight leaves its file out: the other file's own search.
    alone = rank(centroids, unit(rows[1]))
    zero = search(service, files(cat, rocket), weights="0,1e-3")
    assert_same_ranking(as_ranking(zero.json()), alone)
    # Weights follow upload order.
    swapped = search(service, files(rocket, cat), weights="1,4")
    assert_same_ranking(as_ranking(swapped.json()), predicted[(4, 1)])


STAGES = ("decode", "inference", "index_search")


def stage_counts(client: httpx.Client) -> dict[str, float]:
    return {s: metric_value(client, "retrieval_stage_seconds_count", stage=s) for s in STAGES}


@pytest.mark.parametrize(
    ("parts", "weights", "blamed"),
    [
        pytest.param("both", None, "images", id="images-and-image"),
        pytest.param("none", "1", "images", id="no-file"),
        pytest.param("two", "1", "weights", id="too-few-weights"),
        pytest.param("two", "1,1,1", "weights", id="too-many-weights"),
        pytest.param("two", "1,-0.5", "weights", id="negative"),
        pytest.param("two", "1,nan", "weights", id="nan"),
        pytest.param("two", "inf,1", "weights", id="inf"),
        pytest.param("two", "1e999,1", "weights", id="overflow"),
        pytest.param("two", "0,0.0", "weights", id="all-zero"),
        pytest.param("two", "1,heavy", "weights", id="not-a-number"),
        pytest.param("two", "1,,", "weights", id="empty-weight"),
        pytest.param("two", "", "weights", id="empty"),
        pytest.param("weights-file", None, "weights", id="weights-as-a-file"),
        pytest.param("too-many", None, "limit is 4", id="more-files-than-the-limit"),
    ],
)
def test_a_malformed_query_is_a_422_before_anything_is_decoded(
    service: httpx.Client,
    photo_views: dict[str, list[bytes]],
    parts: str,
    weights: str | None,
    blamed: str,
) -> None:
    a, b = photo_views["coins"][3], photo_views["camera"][3]
    body = {
        "both": files(a) + files(b, field="image"),
        "none": [("other", ("x.jpg", a, "image/jpeg"))],
        "two": files(a, b),
        "weights-file": [*files(a, b), ("weights", ("w.txt", b"1,1", "text/plain"))],
        "too-many": files(*photo_views["coins"][: MAX_FILES + 1]),
    }[parts]
    before = stage_counts(service)
    r = search(service, body, weights)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert blamed in r.json()["detail"]
    # Refused before any decoding, inference or index work.
    assert stage_counts(service) == before


def test_a_corrupt_file_among_several_is_named(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    good = photo_views["coins"][4]
    parts = [
        ("images", ("good.jpg", good, "image/jpeg")),
        ("images", ("broken.jpg", good[: len(good) // 3], "image/jpeg")),
    ]
    before = stage_counts(service)
    r = search(service, parts)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "images[1] ('broken.jpg')" in r.json()["detail"]
    after = stage_counts(service)
    assert after["inference"] == before["inference"]
    assert after["index_search"] == before["index_search"]


def test_the_openapi_schema_documents_images_weights_and_the_deprecated_alias(
    service: httpx.Client,
) -> None:
    operation = service.get("/openapi.json").json()["paths"]["/search"]["post"]
    schema = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    props = schema["properties"]
    assert props["images"]["type"] == "array" and props["images"]["maxItems"] == MAX_FILES
    assert (
        props["image"]["deprecated"] is True
        and "deprecated" in props["image"]["description"].lower()
    )
    assert ">= 0" in props["weights"]["description"]
    assert schema["oneOf"] == [{"required": ["images"]}, {"required": ["image"]}]
    assert "weights" in operation["description"] and "deprecated" in operation["description"]


def test_without_batching_the_retriever_ranks_a_set_query_the_same_way(
    embedder: OnnxEmbedder,
    centroids: dict[str, Vector],
    photo_views: dict[str, list[bytes]],
    tmp_path: Path,
) -> None:
    # The pipeline's other path (batching off): the retriever embeds the set itself.
    retriever = Retriever(
        embedder=embedder,
        store=SqliteStore(tmp_path / "store.sqlite3"),
        index=FlatCentroidIndex(embedder.embedding_dim),
        blobs=None,
        metrics=ServiceMetrics(),
        max_image_pixels=40_000_000,
        max_images_per_request=MAX_FILES,
    )
    try:
        retriever.rebuild_index()
        for name in ITEMS:
            views = photo_views[name][GALLERY_VIEWS]
            retriever.enroll(name, [Upload(f"{name}{i}.jpg", v) for i, v in enumerate(views)])
        views = [photo_views["camera"][4], photo_views["coins"][5]]
        rows = [raw_embedding(embedder, v) for v in views]
        hits = retriever.search_set(
            [Upload("a.jpg", views[0]), Upload("b.jpg", views[1])], len(ITEMS), weights=(1, 3)
        )
        expected = rank(centroids, weighted_centroid(rows, (1, 3)))
        assert_same_ranking([(h.item_id, h.score) for h in hits], expected)
        assert np.isclose(sum(s for _, s in expected), sum(h.score for h in hits), atol=1e-4)
    finally:
        retriever.close()
