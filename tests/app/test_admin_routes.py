"""The admin routes over real HTTP through the real app: who may call them, what compaction
really removes and shrinks, where a backup lands, and that two never run at once."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.api_keys import Scope, make_key
from store.directory_blob_store import DirectoryBlobStore
from store.records import NewImage
from store.sqlite_store import SqliteStore
from tests.app.conftest import ServiceFactory
from tests.live_server import free_port
from tests.redis_server import start_redis_server

READ_KEY, READ = make_key("reader", [Scope.READ])
WRITE_KEY, WRITE = make_key("writer", [Scope.WRITE])
ALL_KEY, ALL = make_key("everything", [Scope.READ, Scope.WRITE])
ADMIN_KEY, ADMIN = make_key("ops", [Scope.ADMIN])
KEYS = ";".join(r.hash_line() for r in (READ, WRITE, ALL, ADMIN))
ADMIN_ROUTES = ["/admin/compact", "/admin/backup"]
HOUR_S = 3600.0


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status and body["detail"]
    return body


@pytest.fixture
def keyed(service_factory: ServiceFactory, tmp_path: Path) -> Iterator[httpx.Client]:
    with service_factory(api_keys=KEYS, backup_dir=tmp_path / "backups") as client:
        yield client


def test_only_an_admin_key_may_call_the_admin_routes(keyed: httpx.Client) -> None:
    for path in ADMIN_ROUTES:
        assert_problem(keyed.post(path), 401)
        for key in (READ_KEY, WRITE_KEY, ALL_KEY):
            body = assert_problem(keyed.post(path, headers=bearer(key)), 403)
            assert body["required_scope"] == "admin"
    assert keyed.post("/admin/compact", headers=bearer(ADMIN_KEY)).status_code == 200
    assert keyed.post("/admin/backup", headers=bearer(ADMIN_KEY)).status_code == 200


def test_compaction_removes_old_orphans_keeps_young_ones_and_shrinks_the_store(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]], tmp_path: Path
) -> None:
    views = [v for name in sorted(photo_views) for v in photo_views[name]]
    for i, view in enumerate(views):
        files = {"images": ("v.jpg", view, "image/jpeg")}
        r = keyed.post(f"/items/bulk-{i}/images", files=files, headers=bearer(ALL_KEY))
        assert r.status_code == 201, r.text
    keeper = keyed.post(
        "/items/keeper/images",
        files={"images": ("k.jpg", views[0] + b"\0", "image/jpeg")},
        headers=bearer(ALL_KEY),
    )
    assert keeper.status_code == 201, keeper.text
    # Folds the WAL into the file: the file then holds every image.
    assert keyed.post("/admin/compact", headers=bearer(ADMIN_KEY)).status_code == 200
    sqlite_path = tmp_path / "data" / "store.sqlite3"
    file_full = sqlite_path.stat().st_size
    for i in range(len(views)):
        assert keyed.delete(f"/items/bulk-{i}", headers=bearer(ALL_KEY)).status_code == 204

    # Orphans as a crash between a blob write and its commit leaves them: one past the grace
    # period, one that may still belong to an enrollment in flight.
    blobs = DirectoryBlobStore(tmp_path / "data" / "blobs")
    old, young = b"orphan from an hour ago", b"orphan of a write in flight"
    for data in (old, young):
        blobs.put(hashlib.sha256(data).hexdigest(), data)
    old_path = blobs.path_for(hashlib.sha256(old).hexdigest())
    young_path = blobs.path_for(hashlib.sha256(young).hexdigest())
    two_hours_ago = time.time() - 2 * HOUR_S
    os.utime(old_path, (two_hours_ago, two_hours_ago))

    r = keyed.post("/admin/compact", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "sqlite"
    sweep = body["blobs"]
    assert (sweep["orphans_removed"], sweep["kept_recent"], sweep["held"]) == (1, 1, False)
    assert (sweep["files_before"], sweep["files_after"]) == (3, 2)  # the keeper's blob stays
    assert not old_path.exists() and young_path.exists()
    assert body["store_bytes_after"] < body["store_bytes_before"]
    # Back within 10 % of a store that only ever held the keeper.
    identity = keyed.app.state.service.retriever.identity  # type: ignore[attr-defined]
    reference = SqliteStore(tmp_path / "reference" / "store.sqlite3")
    reference.claim_model_identity(identity)
    reference.enroll("keeper", [NewImage("0" * 64, np.ones(identity.dim, np.float32))])
    reference.compact()
    reference_bytes = reference.disk_bytes()
    reference.close()
    assert sqlite_path.stat().st_size <= 1.1 * reference_bytes < file_full
    assert body["store_bytes_after"] == sqlite_path.stat().st_size  # the WAL truncated
    # Nothing live went: the keeper is still found.
    found = keyed.post(
        "/search",
        files={"image": ("q.jpg", views[0] + b"\0", "image/jpeg")},
        headers=bearer(ALL_KEY),
    )
    assert found.json()["results"][0]["item_id"] == "keeper"
    # The grace period cannot be set below what protects a write in flight.
    assert_problem(keyed.post("/admin/compact?grace_s=0", headers=bearer(ADMIN_KEY)), 422)


def test_backup_writes_a_manifest_under_the_root_and_refuses_paths(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]], tmp_path: Path
) -> None:
    files = {"images": ("a.jpg", photo_views["coffee"][0], "image/jpeg")}
    assert keyed.post("/items/cup/images", files=files, headers=bearer(ALL_KEY)).status_code == 201
    root = tmp_path / "backups"

    r = keyed.post("/admin/backup", params={"out": "nightly-1"}, headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["out"] == "nightly-1" and str(tmp_path) not in r.text
    assert (body["items"], body["images"], body["blobs_copied"], body["missing_blobs"]) == (
        1,
        1,
        1,
        0,
    )
    manifest = json.loads((root / "nightly-1" / "manifest.json").read_text())
    assert manifest["items"] == 1 and manifest["backend"] == "sqlite"
    copy = sqlite3.connect(root / "nightly-1" / "store.sqlite3")
    assert copy.execute("SELECT COUNT(*) FROM images").fetchone() == (1,)
    copy.close()

    assert_problem(
        keyed.post("/admin/backup", params={"out": "nightly-1"}, headers=bearer(ADMIN_KEY)), 409
    )
    for bad in ("..", "../escaped", "/tmp/escaped", ".", "a/b", ".hidden", ""):
        r = keyed.post("/admin/backup", params={"out": bad}, headers=bearer(ADMIN_KEY))
        assert_problem(r, 422)
    assert sorted(p.name for p in root.iterdir()) == ["nightly-1"]
    assert not (tmp_path / "escaped").exists()
    # No name: one made from the time, still under the root.
    r = keyed.post("/admin/backup", headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text
    assert (root / r.json()["out"] / "manifest.json").is_file()


def test_a_second_maintenance_request_is_409_while_one_runs(
    keyed: httpx.Client, tmp_path: Path
) -> None:
    # Another connection holds SQLite's write lock: the VACUUM waits for it (the store's busy
    # timeout), so the compaction is still running when the backup asks.
    holder = sqlite3.connect(tmp_path / "data" / "store.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    first: list[httpx.Response] = []
    compaction = threading.Thread(
        target=lambda: first.append(keyed.post("/admin/compact", headers=bearer(ADMIN_KEY)))
    )
    compaction.start()
    try:
        time.sleep(0.5)  # the compaction reaches its lock and waits on SQLite's (< 5 s)
        r = keyed.post("/admin/backup", params={"out": "racing"}, headers=bearer(ADMIN_KEY))
        assert "already running" in str(assert_problem(r, 409)["detail"])
        assert_problem(keyed.post("/admin/compact", headers=bearer(ADMIN_KEY)), 409)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        compaction.join(timeout=30)
    assert first[0].status_code == 200, first[0].text
    assert not (tmp_path / "backups" / "racing").exists()
    # Once it is over the next one runs.
    r = keyed.post("/admin/backup", params={"out": "after"}, headers=bearer(ADMIN_KEY))
    assert r.status_code == 200, r.text


@pytest.mark.redis
def test_on_redis_compaction_rewrites_the_aof_and_backup_dumps_the_namespace(
    service_factory: ServiceFactory, photo_views: dict[str, list[bytes]], tmp_path: Path
) -> None:
    # A private server with an append-only file: compaction rewrites the whole server's AOF.
    (tmp_path / "redis").mkdir()
    port = free_port()
    proc = start_redis_server(port, tmp_path / "redis", durable=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with service_factory(
            api_keys=KEYS, backup_dir=tmp_path / "backups", redis_url=url, redis_namespace="adm"
        ) as client:
            views = photo_views["coffee"] + photo_views["rocket"]
            for i, view in enumerate(views):
                files = {"images": ("v.jpg", view, "image/jpeg")}
                r = client.post(f"/items/i{i}/images", files=files, headers=bearer(ALL_KEY))
                assert r.status_code == 201, r.text
            for i in range(1, len(views)):
                assert client.delete(f"/items/i{i}", headers=bearer(ALL_KEY)).status_code == 204

            r = client.post("/admin/compact", headers=bearer(ADMIN_KEY))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["backend"] == "redis"
            assert 0 < body["store_bytes_after"] < body["store_bytes_before"]

            r = client.post("/admin/backup", params={"out": "r1"}, headers=bearer(ADMIN_KEY))
            assert r.status_code == 200, r.text
            assert (r.json()["backend"], r.json()["items"], r.json()["blobs_copied"]) == (
                "redis",
                1,
                1,
            )
            manifest = json.loads((tmp_path / "backups" / "r1" / "manifest.json").read_text())
            assert (manifest["namespace"], manifest["images"]) == ("adm", 1)
    finally:
        proc.kill()
        proc.wait()


def test_the_index_digest_tells_whether_the_index_agrees_with_the_store(
    keyed: httpx.Client, photo_views: dict[str, list[bytes]], tmp_path: Path
) -> None:
    assert keyed.get("/admin/index-digest", headers=bearer(ALL_KEY)).status_code == 403
    for name in ("coffee", "rocket"):
        files = {"images": ("v.jpg", photo_views[name][0], "image/jpeg")}
        assert keyed.post(f"/items/{name}/images", files=files, headers=bearer(ALL_KEY)).is_success
    body = keyed.get("/admin/index-digest", headers=bearer(ADMIN_KEY)).json()
    assert body["agrees"] and body["index_items"] == body["store_items"] == 2
    assert body["index_digest"] == body["store_digest"]
    # Another process deletes an item behind the service's back (no change feed on SQLite;
    # the reconciler's next pass is 30 s away): the digest shows the disagreement.
    other = SqliteStore(tmp_path / "data" / "store.sqlite3")
    other.delete_item("rocket")
    other.close()
    body = keyed.get("/admin/index-digest", headers=bearer(ADMIN_KEY)).json()
    assert not body["agrees"] and (body["index_items"], body["store_items"]) == (2, 1)
