"""Filtered search over real HTTP against a brute-force oracle: ``POST /search`` and
``GET /items/{id}/neighbours`` with ``filter=key:value`` (repeated: ANDed) return exactly the k
best items among those whose attributes match, for selectivities from 0.1 % to 100 %, with
each result's attributes.

1000 items of random embeddings with attributes are written through the store API before the
service opens it (HTTP would add nothing but time), so the service's start-up rebuild gives the
index its filter terms and the attribute map its JSON; the queries are photos embedded by the
service over HTTP, and by the oracle through the same preprocessing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from app.main import create_app
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SqliteStore
from tests.app.centroid_oracle import (
    Ranking,
    Vector,
    assert_same_ranking,
    rank,
    raw_embedding,
    unit,
)
from tests.live_server import live_server
from tests.tiny_artifact import TINY_SPEC

ITEMS = 1000
QUERY_PHOTOS = ("coffee", "rocket")


def attributes_of(i: int) -> dict[str, Any]:
    """Item ``i``'s attributes: keys of every selectivity from one item in 1000 to all."""
    attrs: dict[str, Any] = {
        "all": "yes",  # 100 %
        "half": i % 2,  # 50 %
        "tenth": f"t{i % 10}",  # 10 %
        "pct": i % 100,  # 1 %
        "serial": f"s{i}",  # 0.1 %
        "meta": {"pct": i % 100},  # an object: never matches
    }
    if i % 4 == 0:
        attrs["n"] = [5, "5", 5.0, True][i // 4 % 4]  # renders "5", "5", "5.0", "true"
    return attrs


def rendered(value: object) -> str | None:
    """The test's own statement of the rule: strings as is, booleans and numbers as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def matching(spec: list[str]) -> set[str]:
    """Brute force: the items whose attributes hold every ``key:value`` of ``spec``."""
    conditions = [s.partition(":")[::2] for s in spec]
    return {
        f"item-{i:04d}"
        for i in range(ITEMS)
        if all(k in (a := attributes_of(i)) and rendered(a[k]) == v for k, v in conditions)
    }


FILTERS = {
    "0.1 %": ["serial:s123"],
    "1 %": ["pct:37"],
    "10 %": ["tenth:t4"],
    "50 %": ["half:1"],
    "100 %": ["all:yes"],
    "AND, 10 %": ["half:0", "tenth:t4"],
    "AND, none": ["half:1", "tenth:t4"],
    "number vs string": ["n:5"],
    "float": ["n:5.0"],
    "bool": ["n:true"],
    "object never": ["meta:37"],
    "missing key": ["colour:red"],
}


@pytest.fixture(scope="module")
def embeddings() -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(12)
    rows = rng.normal(size=(ITEMS, TINY_SPEC.embedding_dim)).astype(np.float32)
    return {f"item-{i:04d}": rows[i] for i in range(ITEMS)}


@pytest.fixture(scope="module")
def centroids(embeddings: dict[str, npt.NDArray[np.float32]]) -> dict[str, Vector]:
    return {item: unit(row.astype(np.float64)) for item, row in embeddings.items()}


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_path: Path,
    embeddings: dict[str, npt.NDArray[np.float32]],
) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("filtered") / "data"
    data.mkdir(parents=True)
    # No fsync per commit: a throw-away store, filled before the service opens it.
    store = SqliteStore(data / "store.sqlite3", durable=False)
    store.claim_model_identity(
        ModelIdentity(TINY_SPEC.model_name, TINY_SPEC.model_version, TINY_SPEC.embedding_dim)
    )
    for i, (item_id, row) in enumerate(embeddings.items()):
        store.enroll(item_id, [NewImage(f"{i:064x}", row)], attributes_patch=attributes_of(i))
    store.close()
    settings = Settings(model_path=tiny_model_path, data_dir=data, keep_blobs=False)
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def queries(tiny_model_path: Path, photo_views: dict[str, list[bytes]]) -> dict[str, Vector]:
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False)
    return {name: unit(raw_embedding(embedder, photo_views[name][0])) for name in QUERY_PHOTOS}


def ranking(r: httpx.Response) -> Ranking:
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    for hit in results:
        assert hit["attributes"] == attributes_of(int(hit["item_id"].split("-")[1]))
    return [(h["item_id"], h["score"]) for h in results]


def test_every_filter_gives_the_k_best_matching_items(
    service: httpx.Client,
    centroids: dict[str, Vector],
    queries: dict[str, Vector],
    photo_views: dict[str, list[bytes]],
) -> None:
    sizes = {why: len(matching(spec)) for why, spec in FILTERS.items()}
    assert [sizes[w] for w in ("0.1 %", "1 %", "10 %", "50 %", "100 %")] == [1, 10, 100, 500, 1000]
    assert sizes["number vs string"] == 63 + 63 and sizes["float"] == sizes["bool"] == 62
    assert sizes["AND, 10 %"] == 100 and sizes["AND, none"] == sizes["object never"] == 0
    for name in QUERY_PHOTOS:
        photo = {"images": ("q.jpg", photo_views[name][0], "image/jpeg")}
        for spec in FILTERS.values():
            allowed = matching(spec)
            every = rank({i: c for i, c in centroids.items() if i in allowed}, queries[name])
            for k in (1, 10, 100):
                r = service.post("/search", files=photo, params={"k": k, "filter": spec})
                assert_same_ranking(ranking(r), every[:k])
    # Unfiltered equals the 100 % filter.
    photo = {"images": ("q.jpg", photo_views["coffee"][0], "image/jpeg")}
    plain = service.post("/search", files=photo, params={"k": 20})
    assert_same_ranking(ranking(plain), rank(centroids, queries["coffee"], 20))


def test_neighbours_take_the_filter_too(
    service: httpx.Client, centroids: dict[str, Vector]
) -> None:
    for item in ("item-0004", "item-0777"):
        for spec in FILTERS.values():
            allowed = matching(spec) - {item}
            every = rank({i: c for i, c in centroids.items() if i in allowed}, centroids[item])
            for k in (1, 10):
                r = service.get(f"/items/{item}/neighbours", params={"k": k, "filter": spec})
                assert_same_ranking(ranking(r), every[:k])
