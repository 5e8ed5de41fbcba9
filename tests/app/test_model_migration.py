"""A model migration in a running service (SQLite; the command's own tests run it on Redis
too): writes made while the shadow is re-embedded reach both models' stores, the shadow ends
equal to a fresh re-embed of the primary, a switch serves the new model without a restart,
and after a rollback every answer is the one a service that never migrated gives for the same
writes. A service started with another model than its store holds says how to migrate it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.model_migration import (
    install_model,
    new_record,
    open_shadow_store,
    read_record,
    write_record,
)
from app.retriever import model_identity
from app.settings import Settings
from app.store_choice import open_store
from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from store.directory_blob_store import DirectoryBlobStore
from store.sqlite_store import SqliteStore
from tests import redis_server
from tests.app.conftest import ServiceFactory
from tests.migration_oracle import assert_shadow_is_a_fresh_reembed
from tests.store.conftest import _drop_namespace
from tests.tiny_artifact import reference_embeddings, tiny_spec, write_tiny_artifact

NEW_SEED = 7
POLL_S = 0.1


@pytest.fixture(scope="module")
def new_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("new-model"), tiny_spec("2"), NEW_SEED)


def enroll(client: httpx.Client, item: str, views: list[bytes], **attributes: Any) -> None:
    files = [("images", (f"{i}.jpg", v)) for i, v in enumerate(views)]
    data = {"attributes": json.dumps(attributes)} if attributes else None
    r = client.post(f"/items/{item}/images", files=files, data=data)
    assert r.status_code in (200, 201), r.text


def image_ids(client: httpx.Client, item: str) -> list[str]:
    r = client.get(f"/items/{item}")
    assert r.status_code == 200, r.text
    ids: list[str] = r.json()["image_ids"]
    return ids


def delete_image(client: httpx.Client, item: str, n: int) -> None:
    r = client.delete(f"/items/{item}/images/{image_ids(client, item)[n]}")
    assert r.status_code == 204, r.text


def patch(client: httpx.Client, item: str, attributes: dict[str, Any]) -> None:
    r = client.patch(
        f"/items/{item}",
        content=json.dumps(attributes),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text


def answers(client: httpx.Client, queries: list[bytes]) -> dict[str, Any]:
    """Every item and every query's ranking, image ids replaced by (item, position): the two
    services' ids are their own random ones."""
    listing = client.get("/items", params={"limit": 1000}).json()
    labels: dict[str, str] = {}
    out: dict[str, Any] = {"items": listing}
    for summary in listing["items"]:
        item = client.get(f"/items/{summary['item_id']}").json()
        for n, image_id in enumerate(item["image_ids"]):
            labels[image_id] = f"{summary['item_id']}#{n}"
        out[summary["item_id"]] = item
    for i, query in enumerate(queries):
        r = client.post("/search", params={"k": 10}, files={"image": ("q.jpg", query)})
        assert r.status_code == 200, r.text
        out[f"search {i}"] = r.json()
    text = json.dumps(out, sort_keys=True)
    for image_id, label in labels.items():
        text = text.replace(image_id, label)
    result: dict[str, Any] = json.loads(text)
    return result


def status(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/admin/migration")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_for(client: httpx.Client, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body = status(client)
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(POLL_S)


def record_migration(settings: Settings, new_model: Path) -> None:
    """What `centroid-retrieval migrate --model` does before it re-embeds: install the file and
    record the migration in the original store."""
    store = open_store(settings)
    try:
        source = store.get_model_identity()
        assert source is not None
        target = model_identity(OnnxEmbedder(new_model, allow_gpu=False))
        installed = install_model(new_model, settings.model_install_dir)
        write_record(store, new_record(source, target, installed))
    finally:
        store.close()


def check_shadow(settings: Settings, items: int) -> None:
    """The shadow holds a fresh re-embed of the original store, which is marked ready."""
    primary = open_store(settings)
    try:
        record = read_record(primary)
        assert record is not None and record.state == "ready"
        shadow = open_shadow_store(settings, record)
        try:
            checked = assert_shadow_is_a_fresh_reembed(
                primary, shadow, DirectoryBlobStore(settings.blob_dir), tiny_spec("2"), NEW_SEED
            )
            assert checked == items
        finally:
            shadow.close()
    finally:
        primary.close()


def eventually(read: Callable[[], Any], want: Callable[[], Any]) -> None:
    """``read() == want()`` within a few seconds (a replica takes others' writes from the feed)."""
    deadline = time.monotonic() + 15
    while (got := read()) != (expected := want()):
        assert time.monotonic() < deadline, (got, expected)
        time.sleep(POLL_S)


@pytest.fixture
def two_services(
    service_factory: ServiceFactory, tmp_path: Path
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The service that migrates, and one that keeps the old model throughout."""
    with (
        service_factory(migration_poll_s=POLL_S, reconcile_interval_s=0) as migrating,
        service_factory(data_dir=tmp_path / "control", reconcile_interval_s=0) as control,
    ):
        yield migrating, control


def test_writes_during_the_migration_reach_both_stores_and_a_rollback_answers_as_before(
    two_services: tuple[httpx.Client, httpx.Client],
    tmp_path: Path,
    new_model: Path,
    photo_views: dict[str, list[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    migrating, control = two_services
    names = sorted(photo_views)
    for client in (migrating, control):
        for name in names[:5]:
            enroll(client, name, photo_views[name][:3], shelf=name[0])
    queries = [photo_views[name][5] for name in names]

    settings = Settings(model_path=new_model, data_dir=tmp_path / "data")
    record_migration(settings, new_model)
    wait_for(migrating, lambda s: s["state"] == "re-embedding")
    # The service re-embeds in the background (at its share of the model) while writes come.
    r = migrating.post("/admin/migration", params={"action": "reembed"})
    assert r.status_code == 202, r.text
    for client in (migrating, control):
        enroll(client, names[5], photo_views[names[5]][:3])
        enroll(client, names[0], photo_views[names[0]][3:4], shelf="z")
        delete_image(client, names[1], 1)
        assert client.delete(f"/items/{names[2]}").status_code == 204
        patch(client, names[3], {"shelf": None, "colour": "red"})
    done = wait_for(migrating, lambda s: s["state"] == "ready" and not s["run"]["running"])
    assert done["copy_failures"] == 0
    assert done["run"]["report"]["in_step"]

    check_shadow(settings, 5)
    primary = SqliteStore(settings.sqlite_path)
    current = read_record(primary)
    assert current is not None

    # Switch: the next search is answered by the new model, from the shadow's centroids.
    caplog.set_level("WARNING", logger="app.migration_follower")
    r = migrating.post("/admin/migration", params={"action": "switch"})
    assert r.status_code == 200, r.text
    assert r.json()["active"] == "target"
    # The new model's index followed the re-embedding and the copies: served without a rebuild.
    assert "not in step with its store" not in caplog.text
    info = migrating.get("/info").json()
    assert info["model"]["model_version"] == "2"
    assert info["migration"]["state"] == "switched"
    hits = migrating.post(
        "/search", params={"k": 10}, files={"image": ("q.jpg", queries[0])}
    ).json()["results"]
    spec = tiny_spec("2")
    query = reference_embeddings(preprocess_bytes(queries[0], spec)[np.newaxis], NEW_SEED)[0]
    shadow = open_shadow_store(settings, current)
    try:
        expected = {}
        for state in shadow.iter_item_states():
            centroid = state.embedding_sum / np.linalg.norm(state.embedding_sum)
            expected[state.item_id] = float(query @ centroid / np.linalg.norm(query))
    finally:
        shadow.close()
    assert [h["item_id"] for h in hits] == sorted(expected, key=lambda i: (-expected[i], i))
    for hit in hits:
        assert hit["score"] == pytest.approx(expected[hit["item_id"]], abs=1e-5)

    # Writes after the switch go to both stores too; then roll back.
    for client in (migrating, control):
        enroll(client, names[6], photo_views[names[6]][:2], shelf="new")
        delete_image(client, names[0], 0)
        patch(client, names[4], {"colour": "blue"})
    r = migrating.post("/admin/migration", params={"action": "rollback"})
    assert r.status_code == 200, r.text
    # The old model's store received every write while the new one served: the catch-up
    # before serving it again had nothing to re-embed.
    report = r.json()["run"]["report"]
    assert (report["items_copied"], report["items_in_step"]) == (0, 6), report
    assert migrating.get("/info").json()["model"]["model_version"] == "1"
    assert answers(migrating, queries) == answers(control, queries)
    primary.close()


@pytest.mark.redis
def test_redis_replicas_follow_the_migration_and_each_others_writes_to_both_stores(
    service_factory: ServiceFactory,
    tmp_path: Path,
    new_model: Path,
    photo_views: dict[str, list[bytes]],
) -> None:
    namespace = f"test-migration-{uuid.uuid4().hex}"
    common: dict[str, Any] = {
        "redis_url": redis_server.REDIS_URL,
        # No poll within the test: every replica learns of the record (written by the command
        # or by the other replica) from the change feed's meta records.
        "migration_poll_s": 600,
        "reconcile_interval_s": 0,
    }
    names = sorted(photo_views)
    queries = [photo_views[name][5] for name in names]
    try:
        with (
            service_factory(redis_namespace=namespace, **common) as one,
            service_factory(redis_namespace=namespace, **common) as two,
            service_factory(
                redis_namespace=f"{namespace}-control", data_dir=tmp_path / "control", **common
            ) as control,
        ):
            for client in (one, control):
                for name in names[:4]:
                    enroll(client, name, photo_views[name][:3])
            settings = Settings(
                model_path=new_model,
                data_dir=tmp_path / "data",
                redis_url=redis_server.REDIS_URL,
                redis_namespace=namespace,
            )
            record_migration(settings, new_model)
            for replica in (one, two):
                wait_for(replica, lambda s: s["state"] == "re-embedding")
            # One replica re-embeds while the other takes the writes.
            assert one.post("/admin/migration", params={"action": "reembed"}).status_code == 202
            for client in (two, control):
                enroll(client, names[4], photo_views[names[4]][:2])
                delete_image(client, names[0], 2)
                patch(client, names[1], {"colour": "red"})
            wait_for(one, lambda s: s["state"] == "ready" and not s["run"]["running"])
            check_shadow(settings, 5)

            r = one.post("/admin/migration", params={"action": "switch"})
            assert r.status_code == 200, r.text
            wait_for(two, lambda s: s["active"] == "target")
            for client in (two, control):
                enroll(client, names[5], photo_views[names[5]][:2])
                assert client.delete(f"/items/{names[2]}").status_code == 204
            # Both replicas serve the new model, each with the other's writes.
            assert one.get("/info").json()["model"]["model_version"] == "2"
            eventually(lambda: answers(one, queries), lambda: answers(two, queries))

            r = one.post("/admin/migration", params={"action": "rollback"})
            assert r.status_code == 200, r.text
            wait_for(two, lambda s: s["active"] == "source")
            assert answers(one, queries) == answers(control, queries)
            eventually(lambda: answers(two, queries), lambda: answers(control, queries))
    finally:
        for pattern in (namespace, f"{namespace}@*", f"{namespace}-control"):
            _drop_namespace(pattern)


def test_a_start_with_another_model_names_the_command_that_migrates_the_store(
    service_factory: ServiceFactory, new_model: Path, photo_views: dict[str, list[bytes]]
) -> None:
    with service_factory() as old:
        enroll(old, "coffee", photo_views["coffee"][:2])
    with service_factory(model_path=new_model, wait_ready=False) as new:
        deadline = time.monotonic() + 30
        while (ready := new.get("/readyz")).json().get("phase") != "failed":
            assert time.monotonic() < deadline, ready.text
            time.sleep(POLL_S)
        assert ready.status_code == 503
        assert "centroid-retrieval migrate --model" in ready.json()["detail"]
        info = new.get("/info")
        assert info.status_code == 200, info.text
        body = info.json()
        assert body["status"] == "model mismatch"
        assert body["stored_model"] == {"name": "tiny-pooled-projection", "version": "1", "dim": 32}
        assert body["configured_model"]["version"] == "2"
        assert body["migrate_command"].startswith("centroid-retrieval migrate --model ")
