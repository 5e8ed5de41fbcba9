"""Attributes and filters with the shared index (Milvus Lite, two replicas on one Redis store):
the replica taking a write settles the item's filter terms into Milvus with its row; the other
replica only notes the change record, and takes the attributes it returns with results from
it. A filtered search on either replica (``after=`` the write) is the unfiltered ranking cut
to the items the test's own filter admits; a PATCH moves an item between filters, a delete
removes it, and a replica started afterwards (a rebuild that writes nothing to Milvus) returns
the same attributes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests import redis_server
from tests.live_server import live_server
from tests.milvus_lite_server import MilvusLiteServer
from tests.store.conftest import _drop_namespace

pytestmark = pytest.mark.redis
pytest.importorskip("pymilvus")

MERGE = {"Content-Type": "application/merge-patch+json"}
PHOTOS = ("coffee", "rocket", "chelsea", "coins", "camera", "china")


@contextmanager
def replica(
    milvus: MilvusLiteServer, namespace: str, data_dir: Path, model: Path
) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=model,
        data_dir=data_dir,
        redis_url=redis_server.REDIS_URL,
        redis_namespace=namespace,
        index="milvus",
        milvus_uri=milvus.uri,
        keep_blobs=False,
        reconcile_interval_s=0,
    )
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


def search(client: httpx.Client, view: bytes, **params: Any) -> list[dict[str, Any]]:
    r = client.post("/search", files={"images": ("q.jpg", view, "image/jpeg")}, params=params)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def rendered(value: object) -> str | None:
    """The filter rule for the values used here: strings as is, booleans and ints as JSON."""
    return value if isinstance(value, str) else None if value is None else json.dumps(value)


def test_filters_and_attributes_through_milvus_on_two_replicas(
    milvus: MilvusLiteServer,
    namespace: str,
    tmp_path: Path,
    tiny_model_path: Path,
    photo_views: dict[str, list[bytes]],
) -> None:
    attrs = {
        name: {"kind": "even" if i % 2 == 0 else "odd", "i": i} for i, name in enumerate(PHOTOS)
    }
    query = photo_views["coffee"][3]
    with (
        replica(milvus, namespace, tmp_path / "a", tiny_model_path) as a,
        replica(milvus, namespace, tmp_path / "b", tiny_model_path) as b,
    ):
        position = ""
        for name in PHOTOS:
            files = {"images": ("v.jpg", photo_views[name][0], "image/jpeg")}
            r = a.post(
                f"/items/{name}/images", files=files, data={"attributes": json.dumps(attrs[name])}
            )
            assert r.status_code == 201, r.text
            position = r.headers["x-retrieval-position"]
        r = a.patch("/items/rocket", content=b'{"kind": "even", "new": true}', headers=MERGE)
        assert r.status_code == 200, r.text
        attrs["rocket"] = {"kind": "even", "i": 1, "new": True}
        patched = r.headers["x-retrieval-position"]

        for client in (a, b):
            every = search(client, query, k=100, after=patched)
            assert {h["item_id"]: h["attributes"] for h in every} == attrs
            # With Milvus, the second stage reads the candidates' images from the store.
            assert client.get("/info").json()["image_embeddings"]["mode"] == "store"
            for h in every:
                assert h["image_count"] == 1
                assert [h["best_image_id"]] == a.get(f"/items/{h['item_id']}").json()["image_ids"]
            for spec in (["kind:even"], ["kind:odd"], ["kind:even", "new:true"], ["i:3"], ["i:9"]):
                conditions = [s.split(":") for s in spec]
                want = [
                    h["item_id"]
                    for h in every
                    if all(rendered(h["attributes"].get(k)) == v for k, v in conditions)
                ]
                got = search(client, query, k=2, filter=spec, after=patched)
                assert [h["item_id"] for h in got] == want[:2], spec
                assert all(h["attributes"] == attrs[h["item_id"]] for h in got)
            near = client.get("/items/coffee/neighbours", params={"filter": "kind:even", "k": 10})
            assert {h["item_id"] for h in near.json()["results"]} == {"rocket", "chelsea", "camera"}

        gone = a.delete("/items/china").headers["x-retrieval-position"]
        assert "china" not in {
            h["item_id"] for h in search(b, query, filter="kind:even", after=gone)
        }
        del attrs["china"]
        assert position  # every enrollment answered its position
    # A replica started now: its rebuild reads the store and finds Milvus in step.
    with replica(milvus, namespace, tmp_path / "c", tiny_model_path) as c:
        every = search(c, query, k=100)
        assert {h["item_id"]: h["attributes"] for h in every} == attrs
        assert [h["item_id"] for h in search(c, query, filter="new:true")] == ["rocket"]
