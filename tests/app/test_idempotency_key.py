"""``Idempotency-Key`` over real HTTP through the real app, on SQLite and on Redis: a retry
gets the first answer byte for byte and writes nothing, on this replica or another; a reused
key is a 422; a write whose outcome was unknown is settled by its retry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest

from app.api_keys import Scope, make_key
from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.store.conftest import _drop_namespace
from tests.store.resp_cutting_proxy import RespCuttingProxy

ALICE_KEY, ALICE = make_key("alice", [Scope.READ, Scope.WRITE])
BOB_KEY, BOB = make_key("bob", [Scope.READ, Scope.WRITE])
KEYS = ";".join(r.hash_line() for r in (ALICE, BOB))


def as_(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def files(*views: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("images", (f"v{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]


def counts(client: httpx.Client, key: str = ALICE_KEY) -> tuple[int, int]:
    info = client.get("/info", headers=as_(key)).json()
    return info["items"], info["images"]


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.fixture(params=["sqlite", "redis"])
def keyed(
    request: pytest.FixtureRequest, service_factory: ServiceFactory, namespace: str
) -> Iterator[httpx.Client]:
    backend = {} if request.param == "sqlite" else {"redis_url": redis_server.REDIS_URL}
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
    with service_factory(api_keys=KEYS, redis_namespace=namespace, **backend) as client:
        yield client


def test_a_retried_enrollment_gets_the_first_answer_and_writes_nothing(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    cat = photo_views["chelsea"]
    first = keyed.post("/items/cat/images", files=files(*cat[:2]), headers=as_(ALICE_KEY, "k-1"))
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    # httpx picks a new multipart boundary: the raw body differs, the request does not.
    retry = keyed.post("/items/cat/images", files=files(*cat[:2]), headers=as_(ALICE_KEY, "k-1"))
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    assert retry.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert counts(keyed) == (1, 2)
    # The same bytes without a key run again (and add nothing, being known bytes: 200).
    plain = keyed.post("/items/cat/images", files=files(*cat[:2]), headers=as_(ALICE_KEY))
    assert plain.status_code == 200 and "idempotent-replayed" not in plain.headers
    assert plain.json()["created"] == [False, False]
    # A keyed enrollment that added nothing replays its 200, not a 201.
    noop = keyed.post("/items/cat/images", files=files(cat[1]), headers=as_(ALICE_KEY, "k-2"))
    again = keyed.post("/items/cat/images", files=files(cat[1]), headers=as_(ALICE_KEY, "k-2"))
    assert noop.status_code == again.status_code == 200, noop.text
    assert again.headers["idempotent-replayed"] == "true" and again.content == noop.content


def test_the_same_key_with_another_request_is_422_and_stores_nothing(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    cat, rocket = photo_views["chelsea"], photo_views["rocket"]
    ok = keyed.post("/items/cat/images", files=files(cat[0]), headers=as_(ALICE_KEY, "k-1"))
    assert ok.status_code == 201
    refused = [
        keyed.post("/items/cat/images", files=files(rocket[0]), headers=as_(ALICE_KEY, "k-1")),
        keyed.post("/items/dog/images", files=files(cat[0]), headers=as_(ALICE_KEY, "k-1")),
        keyed.delete("/items/cat", headers=as_(ALICE_KEY, "k-1")),
    ]
    for r in refused:
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "Idempotency-Key" in r.json()["detail"]
    assert counts(keyed) == (1, 1)


def test_keys_of_two_callers_never_meet(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    cat, rocket = photo_views["chelsea"], photo_views["rocket"]
    a = keyed.post("/items/cat/images", files=files(cat[0]), headers=as_(ALICE_KEY, "same"))
    b = keyed.post("/items/rocket/images", files=files(rocket[0]), headers=as_(BOB_KEY, "same"))
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers and b.json()["item_id"] == "rocket"
    assert counts(keyed) == (2, 2)


def test_retried_deletes_replay_their_204_instead_of_404(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    views = photo_views["coffee"][:2]
    image_ids = keyed.post("/items/mug/images", files=files(*views), headers=as_(ALICE_KEY)).json()[
        "image_ids"
    ]
    one = f"/items/mug/images/{image_ids[0]}"
    for path, key in ((one, "del-img"), ("/items/mug", "del-item")):
        first = keyed.delete(path, headers=as_(ALICE_KEY, key))
        retry = keyed.delete(path, headers=as_(ALICE_KEY, key))
        assert first.status_code == retry.status_code == 204
        assert retry.headers["idempotent-replayed"] == "true" and retry.content == b""
        assert keyed.delete(path, headers=as_(ALICE_KEY)).status_code == 404
    assert counts(keyed) == (0, 0)


@pytest.mark.parametrize("bad", ["", "x" * 256, "has space", "naïve"])
def test_a_malformed_key_is_refused_before_anything_is_stored(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]], bad: str
) -> None:
    headers = {**as_(ALICE_KEY), "Idempotency-Key": bad}
    r = keyed.post(
        "/items/cat/images",
        files=files(photo_views["chelsea"][0]),
        headers={k: v.encode() for k, v in headers.items()},  # type: ignore[misc]
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert counts(keyed) == (0, 0)


@pytest.mark.redis
def test_a_retry_through_another_replica_replays_the_answer(
    service_factory: ServiceFactory, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    shared = {"api_keys": KEYS, "redis_url": redis_server.REDIS_URL, "redis_namespace": namespace}
    cat = photo_views["chelsea"][:3]
    with service_factory(**shared) as a, service_factory(**shared) as b:
        first = a.post("/items/cat/images", files=files(*cat), headers=as_(ALICE_KEY, "k-9"))
        retry = b.post("/items/cat/images", files=files(*cat), headers=as_(ALICE_KEY, "k-9"))
        assert first.status_code == retry.status_code == 201
        assert retry.content == first.content and retry.headers["idempotent-replayed"] == "true"
        assert counts(b) == (1, 3)
        gone = a.delete("/items/cat", headers=as_(ALICE_KEY, "k-10"))
        again = b.delete("/items/cat", headers=as_(ALICE_KEY, "k-10"))
        assert gone.status_code == again.status_code == 204
        assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.redis
def test_a_write_with_an_unknown_outcome_is_settled_by_its_retry(
    service_factory: ServiceFactory, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    """The EXEC commits but its answer is lost (503 "outcome unknown"); the retry with the same
    key returns the answer the lost one would have had, the image ids the store holds."""
    shared = urlparse(redis_server.REDIS_URL)
    rocket = photo_views["rocket"][:2]
    with (
        RespCuttingProxy(shared.hostname or "127.0.0.1", shared.port or 6379) as proxy,
        service_factory(
            api_keys=KEYS, redis_url=proxy.url, redis_namespace=namespace, reconcile_interval_s=0
        ) as client,
    ):
        proxy.cut_next_exec(deliver=True)
        lost = client.post(
            "/items/rocket/images", files=files(*rocket), headers=as_(ALICE_KEY, "u")
        )
        assert lost.status_code == 503 and "outcome is unknown" in lost.json()["detail"]
        assert "Idempotency-Key" in lost.json()["detail"]
        retry = client.post(
            "/items/rocket/images", files=files(*rocket), headers=as_(ALICE_KEY, "u")
        )
        assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
        stored = client.get("/items/rocket", headers=as_(ALICE_KEY)).json()
        assert retry.json()["image_ids"] == stored["image_ids"] and stored["image_count"] == 2

        # Not applied (the EXEC never reached Redis): the retry writes, once.
        proxy.cut_next_exec(deliver=False)
        lost = client.delete("/items/rocket", headers=as_(ALICE_KEY, "d"))
        assert lost.status_code == 503
        retry = client.delete("/items/rocket", headers=as_(ALICE_KEY, "d"))
        assert retry.status_code == 204 and "idempotent-replayed" not in retry.headers
        assert counts(client) == (0, 0)
