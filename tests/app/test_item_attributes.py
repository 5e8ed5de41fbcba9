"""Item attributes over real HTTP, the same test bodies on an SQLite and on a Redis store
(congruence): set by the enrollment's ``attributes`` field and by ``PATCH /items/{id}``
(``application/merge-patch+json``, RFC 7396), returned by ``GET /items/{id}``, ``GET /items``
and search results; refusals (415, 422, 404) store nothing (the store's version unchanged, no
blob left behind); idempotent PATCH; ``GET /items?filter=`` against a brute-force filter of
what the test enrolled. Then the paths that rebuild the attributes without a request: a restart
from the index snapshot, the reconciler, and a second replica reading a PATCH through the Redis
change feed (``after=``)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.retriever import Retriever
from app.settings import Settings
from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.app.metrics_text import metric_value
from tests.live_server import live_server
from tests.store.conftest import _drop_namespace

MERGE = {"Content-Type": "application/merge-patch+json"}
LIMIT = 512  # RETRIEVAL_MAX_ATTRIBUTES_BYTES of these services: small, so oversize is cheap


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path
) -> Iterator[httpx.Client]:
    values: dict[str, Any] = {
        "model_path": tiny_model_path,
        "data_dir": tmp_path_factory.mktemp("attributes") / "data",
        "max_attributes_bytes": LIMIT,
    }
    namespace = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        values.update(redis_url=redis_server.REDIS_URL, redis_namespace=namespace)
    app = create_app(Settings(**values))
    try:
        with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
    finally:
        if request.param == "redis":
            _drop_namespace(namespace)


def retriever_of(client: httpx.Client) -> Retriever:
    retriever: Retriever = client.app.state.service.require_retriever()  # type: ignore[attr-defined]
    return retriever


def new_id() -> str:
    return f"item-{uuid.uuid4().hex[:10]}"


def enroll(
    client: httpx.Client, item_id: str, *views: bytes, attributes: str | None = None
) -> httpx.Response:
    files = [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]
    data = {} if attributes is None else {"attributes": attributes}
    return client.post(f"/items/{item_id}/images", files=files, data=data)


def patch(client: httpx.Client, item_id: str, body: object, **headers: str) -> httpx.Response:
    return client.patch(f"/items/{item_id}", content=json.dumps(body), headers={**MERGE, **headers})


def attributes_of(client: httpx.Client, item_id: str) -> dict[str, Any]:
    r = client.get(f"/items/{item_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()["attributes"]
    return body


def search(client: httpx.Client, view: bytes, **params: Any) -> list[dict[str, Any]]:
    r = client.post("/search", files={"images": ("q.jpg", view, "image/jpeg")}, params=params)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def assert_problem(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == status


# -- round trip and merge semantics ----------------------------------------------------------


def test_enrollment_sets_attributes_and_patch_merges_them(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    item = new_id()
    first = {"sku": "A-1", "size": 42, "dims": {"w": 10, "h": 20}, "tags": ["x", "y"]}
    r = enroll(service, item, photo_views["coffee"][0], attributes=json.dumps(first))
    assert r.status_code == 201, r.text
    assert attributes_of(service, item) == first
    # A second enrollment merges (RFC 7396) into what the item holds.
    r = enroll(service, item, photo_views["coffee"][1], attributes='{"colour": "red", "size": 43}')
    assert r.status_code == 201, r.text
    assert attributes_of(service, item) == {**first, "colour": "red", "size": 43}

    r = patch(service, item, {"colour": None, "dims": {"h": None, "d": 5}, "tags": ["z"]})
    assert r.status_code == 200, r.text
    expected = {"sku": "A-1", "size": 43, "dims": {"w": 10, "d": 5}, "tags": ["z"]}
    body = r.json()
    assert body["attributes"] == expected and body["item_id"] == item
    assert body["image_count"] == 2 and "index_pending" not in body
    assert body["position"] == r.headers["x-retrieval-position"]
    assert attributes_of(service, item) == expected
    # A non-object replaces an object, an object replaces a scalar.
    r = patch(service, item, {"dims": "flat", "size": {"eu": 43}})
    assert r.json()["attributes"] == {
        "sku": "A-1",
        "size": {"eu": 43},
        "dims": "flat",
        "tags": ["z"],
    }
    # Deleting a key that is not there, and setting what is there, change nothing: no write.
    before = r.headers["x-retrieval-position"]
    same = patch(service, item, {"absent": None, "sku": "A-1"})
    assert same.status_code == 200 and same.headers["x-retrieval-position"] == before
    # Everything deleted: {}.
    r = patch(service, item, {"sku": None, "size": None, "dims": None, "tags": None})
    assert r.json()["attributes"] == {} and attributes_of(service, item) == {}
    # An enrollment that adds no image but changes the attributes is still a write.
    again = enroll(service, item, photo_views["coffee"][0], attributes='{"sku": "B"}')
    assert again.status_code == 200 and again.json()["created"] == [False]
    assert again.headers["x-retrieval-position"] != r.headers["x-retrieval-position"]
    assert attributes_of(service, item) == {"sku": "B"}


def test_search_results_and_the_listing_carry_attributes(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    item = new_id()
    attrs = {"camera": "x100", "n": 5, "nested": {"deep": [1, 2]}}
    assert enroll(service, item, photo_views["rocket"][0], attributes=json.dumps(attrs)).is_success
    hits = search(service, photo_views["rocket"][0], k=100)
    assert {h["item_id"]: h["attributes"] for h in hits}[item] == attrs
    filtered = search(service, photo_views["rocket"][0], filter=["camera:x100", "n:5"])
    assert [h["item_id"] for h in filtered] == [item]
    neighbours = service.get(f"/items/{item}/neighbours", params={"k": 100, "filter": "n:5"})
    assert neighbours.status_code == 200 and neighbours.json()["results"] == []
    assert patch(service, item, {"camera": "gfx"}).status_code == 200
    assert search(service, photo_views["rocket"][0], filter="camera:x100") == []
    (hit,) = search(service, photo_views["rocket"][0], filter="camera:gfx")
    assert hit["item_id"] == item and hit["attributes"] == {**attrs, "camera": "gfx"}
    listed = service.get("/items", params={"limit": 1000}).json()["items"]
    assert {i["item_id"]: i["attributes"] for i in listed}[item] == {**attrs, "camera": "gfx"}


def test_info_states_the_attribute_memory(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    before = service.get("/info").json()["attributes"]
    big = {"note": "x" * 300}
    assert enroll(service, new_id(), photo_views["china"][0], attributes=json.dumps(big)).is_success
    after = service.get("/info").json()
    assert after["attributes"]["items"] == before["items"] + 1
    assert after["attributes"]["bytes"] >= before["bytes"] + 300
    assert after["limits"]["max_attributes_bytes"] == LIMIT


# -- refusals store nothing ------------------------------------------------------------------


def test_bad_attributes_are_422_and_store_nothing(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    retriever = retriever_of(service)
    store, blobs = retriever.store, retriever.blobs
    assert blobs is not None
    item = new_id()
    near_limit = {"pad": "p" * (LIMIT - 40)}  # 10-odd bytes of JSON framing: fits
    assert enroll(
        service, item, photo_views["coins"][0], attributes=json.dumps(near_limit)
    ).is_success
    fresh = photo_views["coins"][1]  # bytes no item holds yet
    fresh_hash = hashlib.sha256(fresh).hexdigest()
    version = store.last_version()
    refused = {
        "not JSON": "{sku: 1}",
        "not an object": "[1, 2]",
        "NaN": '{"x": NaN}',
        "alone over the limit": json.dumps({"pad": "q" * LIMIT}),
        # Fits alone; only merged into the item's attributes is it over: the store's refusal,
        # after the blob was written, which must be deleted again.
        "merged over the limit": json.dumps({"more": "m" * 60}),
    }
    for why, text in refused.items():
        r = enroll(service, item, fresh, attributes=text)
        assert_problem(r, 422)
        assert store.last_version() == version, why
        assert not blobs.exists(fresh_hash), why
        r = service.patch(f"/items/{item}", content=text, headers=MERGE)
        assert_problem(r, 422)
        assert store.last_version() == version, why
    # A new item refused for its attributes is not created.
    other = new_id()
    assert_problem(enroll(service, other, fresh, attributes="null"), 422)
    assert service.get(f"/items/{other}").status_code == 404
    assert not blobs.exists(fresh_hash)
    twice = service.post(
        f"/items/{other}/images",
        files=[("images", ("v.jpg", fresh, "image/jpeg"))],
        data={"attributes": ["{}", "{}"]},
    )
    assert_problem(twice, 422)
    assert attributes_of(service, item) == near_limit
    assert store.last_version() == version


def test_patch_refuses_another_content_type_and_an_unknown_item(service: httpx.Client) -> None:
    retriever = retriever_of(service)
    version = retriever.store.last_version()
    for content_type in ("application/json", "text/plain", None):
        headers = {} if content_type is None else {"Content-Type": content_type}
        r = service.patch("/items/anything", content=b'{"a": 1}', headers=headers)
        assert_problem(r, 415)
    assert_problem(patch(service, "no-such-item", {"a": 1}), 404)
    assert service.get("/items/no-such-item").status_code == 404
    assert retriever.store.last_version() == version
    ok = service.patch(
        "/items/no-such-item",
        content=b"{}",
        headers={"Content-Type": "application/merge-patch+json; charset=utf-8"},
    )
    assert_problem(ok, 404)  # the parameter is accepted: past the media type check


def test_patch_with_an_idempotency_key_is_replayed(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    item = new_id()
    assert enroll(service, item, photo_views["camera"][0]).is_success
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = patch(service, item, {"count": 1}, **key)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    assert patch(service, item, {"count": 2}).status_code == 200  # changed since, without a key
    again = patch(service, item, {"count": 1}, **key)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["x-retrieval-position"] == first.headers["x-retrieval-position"]
    assert attributes_of(service, item) == {"count": 2}  # the replay wrote nothing
    assert_problem(patch(service, item, {"count": 3}, **key), 422)  # the key, another body


def test_enrollment_idempotency_covers_the_attributes_field(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    item = new_id()
    files = [("images", ("v.jpg", photo_views["flower"][0], "image/jpeg"))]
    key = {"Idempotency-Key": uuid.uuid4().hex}
    url = f"/items/{item}/images"
    first = service.post(url, files=files, data={"attributes": '{"a": 1}'}, headers=key)
    assert first.status_code == 201
    replay = service.post(url, files=files, data={"attributes": '{"a": 1}'}, headers=key)
    assert replay.headers["idempotent-replayed"] == "true" and replay.content == first.content
    other = service.post(url, files=files, data={"attributes": '{"a": 2}'}, headers=key)
    assert_problem(other, 422)
    assert attributes_of(service, item) == {"a": 1}


# -- the listing's filter against brute force ------------------------------------------------


def rendered(value: object) -> str | None:
    """The test's own statement of the rule: strings as is, booleans and numbers as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def matches(attrs: dict[str, Any], conditions: list[tuple[str, str]]) -> bool:
    return all(k in attrs and rendered(attrs[k]) == v for k, v in conditions)


def test_listing_filter_equals_a_brute_force_filter(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    values: list[object] = [5, "5", 5.0, True, "true", {"o": 1}, [5], None, "a:b"]
    enrolled: dict[str, dict[str, Any]] = {}
    for i in range(27):
        attrs = {"group": group, "v": values[i % len(values)], "parity": i % 2}
        if i % 3 == 0:
            del attrs["v"]  # missing keys never match
        attrs = {k: v for k, v in attrs.items() if v is not None}
        item = f"{group}-{i:02d}"
        view = photo_views["astronaut"][i % 6]
        assert enroll(service, item, view, attributes=json.dumps(attrs)).is_success
        enrolled[item] = attrs
    filters = [
        [("v", "5")],
        [("v", "5.0")],
        [("v", "true")],
        [("v", "a:b")],
        [("v", "5"), ("parity", "1")],
        [("parity", "0")],
        [("v", '{"o": 1}')],
        [("v", "")],
    ]
    for conditions in filters:
        expected = sorted(i for i, a in enrolled.items() if matches(a, conditions))
        specs = [f"group:{group}"] + [f"{k}:{v}" for k, v in conditions]
        got: list[str] = []
        cursor = None
        while True:  # pages of 4: the cursor of a filtered listing
            params: dict[str, Any] = {"filter": specs, "limit": 4}
            if cursor is not None:
                params["cursor"] = cursor
            r = service.get("/items", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            for entry in page["items"]:
                assert entry["attributes"] == enrolled[entry["item_id"]]
            got += [entry["item_id"] for entry in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == expected, conditions
    assert any(matches(a, [("v", "5")]) for a in enrolled.values())
    for bad in ("no-colon", ":empty-key", "bad key:1", "x" * 65 + ":1"):
        assert_problem(service.get("/items", params={"filter": bad}), 422)
        r = service.post(
            "/search",
            files={"images": ("q.jpg", photo_views["astronaut"][0], "image/jpeg")},
            params={"filter": bad},
        )
        assert_problem(r, 422)
        assert_problem(service.get(f"/items/{group}-00/neighbours", params={"filter": bad}), 422)


# -- attributes rebuilt without a request ----------------------------------------------------


def test_a_restart_from_the_snapshot_keeps_attributes_and_terms(
    tmp_path: Path, tiny_model_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    settings = Settings(model_path=tiny_model_path, data_dir=tmp_path / "data", keep_blobs=False)
    query = photo_views["chelsea"][0]
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert enroll(c, "cat", query, attributes='{"kind": "cat", "meta": {"a": 1}}').is_success
        assert enroll(c, "other", photo_views["coins"][0], attributes='{"kind": "coin"}').is_success
        assert enroll(c, "bare", photo_views["flower"][0]).is_success
    # Stopped cleanly: a snapshot at shutdown holds everything; the restart loads it.
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert metric_value(c, "retrieval_index_startup_seconds", how="snapshot") > 0
        (hit,) = search(c, query, filter="kind:cat")
        assert hit == {**hit, "item_id": "cat", "attributes": {"kind": "cat", "meta": {"a": 1}}}
        every = {h["item_id"]: h["attributes"] for h in search(c, query)}
        assert every == {
            "cat": {"kind": "cat", "meta": {"a": 1}},
            "other": {"kind": "coin"},
            "bare": {},
        }


# SQLite only: on Redis a write behind the service's back still reaches its index through the
# change feed (the replica test's path), so there is nothing for the reconciler to repair.
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_the_reconciler_brings_attributes_written_behind_its_back(
    service: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    retriever = retriever_of(service)
    assert retriever.store.backend == "sqlite"
    item = new_id()
    view = photo_views["stereo_motorcycle"][0]
    assert enroll(service, item, view, attributes='{"state": "old"}').is_success
    retriever.store.patch_attributes(item, {"state": "new"})  # the index is not told
    assert search(service, view, filter="state:new") == []
    retriever.reconciler.mark(item)
    assert retriever.reconciler.reconcile_pending() == 1
    (hit,) = search(service, view, filter="state:new")
    assert hit["item_id"] == item and hit["attributes"] == {"state": "new"}
    retriever.store.patch_attributes(item, {"state": "newer"})
    assert retriever.reconciler.reconcile_all() >= 1
    assert [h["item_id"] for h in search(service, view, filter="state:newer")] == [item]


@pytest.mark.redis
def test_a_patch_on_one_replica_is_seen_by_a_filtered_search_on_another(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]]
) -> None:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    shared = {"redis_url": redis_server.REDIS_URL, "redis_namespace": namespace}
    view = photo_views["immunohistochemistry"][0]
    try:
        with service_factory(**shared) as a, service_factory(**shared) as b:
            assert enroll(a, "slide", view, attributes='{"stain": "he"}').is_success
            assert enroll(a, "near", photo_views["immunohistochemistry"][1]).is_success
            for stain in ("ihc", "he"):
                r = patch(a, "slide", {"stain": stain, "seen": True})
                after = r.headers["x-retrieval-position"]
                hits = search(b, view, filter=f"stain:{stain}", after=after)
                assert [h["item_id"] for h in hits] == ["slide"]
                assert hits[0]["attributes"] == {"stain": stain, "seen": True}
                stale = "he" if stain != "he" else "ihc"
                assert search(b, view, filter=f"stain:{stale}", after=after) == []
                r = b.get("/items/near/neighbours", params={"filter": "seen:true", "after": after})
                assert [h["item_id"] for h in r.json()["results"]] == ["slide"]
            gone = a.delete("/items/slide").headers["x-retrieval-position"]
            assert search(b, view, filter="stain:he", after=gone) == []
            assert "slide" not in {h["item_id"] for h in search(b, view, after=gone)}
    finally:
        _drop_namespace(namespace)
