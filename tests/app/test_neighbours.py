"""Search by item over real HTTP: ``GET /items/{id}/neighbours`` ranks the other items by cosine
between centroids, equal to a brute-force ranking of the oracle's centroids, the item itself
excluded and exactly ``k`` others even among exact ties; 404 for an unknown item; ``after=``
waits for a write made through another replica (real Redis, two app instances)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from tests import redis_server
from tests.app.centroid_oracle import (
    Vector,
    as_ranking,
    assert_same_ranking,
    rank,
    raw_embedding,
    weighted_centroid,
)
from tests.app.conftest import ServiceFactory
from tests.live_server import live_server
from tests.store.conftest import _drop_namespace

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "china")
# Three items holding the same bytes: identical centroids, so exactly tied scores.
TWINS = ("twin-a", "twin-b", "twin-c")
TWIN_PHOTO = "flower"


def files(*views: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def gallery(photo_views: dict[str, list[bytes]]) -> dict[str, list[bytes]]:
    views = {name: photo_views[name][:3] for name in ITEMS}
    views.update({twin: photo_views[TWIN_PHOTO][:2] for twin in TWINS})
    return views


@pytest.fixture(scope="module")
def centroids(tiny_model_path: Path, photo_views: dict[str, list[bytes]]) -> dict[str, Vector]:
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    return {
        item: weighted_centroid([raw_embedding(embedder, v) for v in views])
        for item, views in gallery(photo_views).items()
    }


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_path: Path,
    photo_views: dict[str, list[bytes]],
) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("neighbours") / "data"
    app = create_app(Settings(model_path=tiny_model_path, data_dir=data_dir))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for item, views in gallery(photo_views).items():
            r = client.post(f"/items/{item}/images", files=files(*views))
            assert r.status_code == 201, r.text
        yield client


def neighbours(client: httpx.Client, item_id: str, **params: object) -> httpx.Response:
    return client.get(f"/items/{item_id}/neighbours", params=params)


def test_neighbours_are_a_brute_force_ranking_of_the_other_centroids(
    service: httpx.Client, centroids: dict[str, Vector]
) -> None:
    for item in (*ITEMS, TWINS[1]):
        others = {i: c for i, c in centroids.items() if i != item}
        expected = rank(others, centroids[item])
        every = neighbours(service, item, k=len(others))
        assert every.status_code == 200, every.text
        assert_same_ranking(as_ranking(every.json()), expected)
        top = neighbours(service, item, k=3)
        assert_same_ranking(as_ranking(top.json()), expected[:3])
    # More than there are others: all of them, never the item itself.
    r = neighbours(service, "chelsea", k=100)
    assert len(r.json()["results"]) == len(centroids) - 1
    assert "chelsea" not in {h["item_id"] for h in r.json()["results"]}


def test_exact_ties_give_exactly_k_others_ordered_by_item_id(service: httpx.Client) -> None:
    # twin-a, twin-b and twin-c score the same against each of them (the item itself too), so
    # the item may rank anywhere among its ties; dropping it must still leave exactly k.
    def top(item: str, k: int) -> list[str]:
        hits = neighbours(service, item, k=k).json()["results"]
        assert all(h["score"] == pytest.approx(1, abs=1e-5) for h in hits)
        return [h["item_id"] for h in hits]

    assert top("twin-a", 1) == ["twin-b"]
    assert top("twin-b", 1) == ["twin-a"]
    assert top("twin-c", 1) == ["twin-a"]  # twin-c is not among the top 2 of all: still 1
    assert top("twin-c", 2) == ["twin-a", "twin-b"]
    assert top("twin-b", 2) == ["twin-a", "twin-c"]


def test_min_score_cuts_the_ranking(service: httpx.Client, centroids: dict[str, Vector]) -> None:
    others = {i: c for i, c in centroids.items() if i != "coffee"}
    expected = rank(others, centroids["coffee"])
    cut = (expected[2][1] + expected[3][1]) / 2  # between the 3rd and the 4th
    r = neighbours(service, "coffee", k=10, min_score=cut)
    assert_same_ranking(as_ranking(r.json()), expected[:3])


def test_an_unknown_item_is_a_404_problem(service: httpx.Client) -> None:
    r = neighbours(service, "no-such-item")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "no-such-item" in r.json()["detail"]
    bad_k = neighbours(service, "coffee", k=0)
    assert bad_k.status_code == 422 and bad_k.headers["content-type"] == "application/problem+json"


def test_after_on_one_process_answers_a_known_position_and_refuses_an_unknown_one(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    r = service.post("/items/late/images", files=files(photo_views["coins"][5]))
    position = r.headers["x-retrieval-position"]
    seen = neighbours(service, "late", k=1, after=position)
    assert seen.status_code == 200 and seen.json()["results"][0]["item_id"] == "coins"
    # SQLite is one process: a position it has not applied was never a write's.
    bogus = neighbours(service, "late", after=f"{10**12}.late")
    assert bogus.status_code == 422
    assert bogus.headers["content-type"] == "application/problem+json"
    assert service.delete("/items/late").status_code == 204


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.mark.redis
def test_after_sees_a_write_made_through_another_replica(
    service_factory: ServiceFactory, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    shared = {"redis_url": redis_server.REDIS_URL, "redis_namespace": namespace}
    with service_factory(**shared) as a, service_factory(**shared) as b:
        assert a.post("/items/cat/images", files=files(*photo_views["chelsea"][:2])).is_success
        for i in range(3):  # each time: written on A, asked of B at once
            item = f"rocket-{i}"
            r = a.post(f"/items/{item}/images", files=files(photo_views["rocket"][i]))
            assert r.status_code == 201
            hits = neighbours(b, item, k=5, after=r.headers["x-retrieval-position"])
            assert hits.status_code == 200, hits.text
            ids = [h["item_id"] for h in hits.json()["results"]]
            assert item not in ids and len(ids) == i + 1  # cat and the earlier rockets
        gone = a.delete("/items/rocket-0")
        after_delete = neighbours(b, "rocket-0", after=gone.headers["x-retrieval-position"])
        assert after_delete.status_code == 404
        cat = neighbours(b, "cat", k=5, after=gone.headers["x-retrieval-position"])
        assert "rocket-0" not in {h["item_id"] for h in cat.json()["results"]}
