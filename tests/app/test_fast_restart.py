"""A restart of the real service (``python -m app.server``) loads its index snapshot and replays
only the writes after it; a snapshot that does not fit the store is ignored for a rebuild.

The two starts whose way of stopping is under test (SIGKILL: no snapshot at shutdown; SIGTERM:
one) are real processes; the starts after them only read what those left on disk, so they run
the same app in this process (its lifespan is the process's), which saves two interpreter and
model start-ups.

SQLite here; the Redis replica's replay from the change feed is the follower's ordinary path
(tests/app/test_change_follower.py) and the property test covers both backends'
snapshot + replay against a rebuild (tests/app/test_index_snapshot_replay_property.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.app.conftest import ServiceFactory
from tests.app.launched_server import Launched, launched
from tests.app.metrics_text import metric_value

NAMES = ["astronaut", "chelsea", "coffee", "rocket"]


def enroll(client: httpx.Client, item: str, views: list[bytes]) -> None:
    files = [("images", (f"{item}-{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]
    r = client.post(f"/items/{item}/images", files=files)
    assert r.status_code in (200, 201), r.text


def top(client: httpx.Client, view: bytes, k: int = 10) -> list[tuple[str, float]]:
    r = client.post("/search", files={"image": ("q.jpg", view, "image/jpeg")}, params={"k": k})
    assert r.status_code == 200, r.text
    return [(h["item_id"], round(h["score"], 5)) for h in r.json()["results"]]


def startup(client: httpx.Client) -> dict[str, float]:
    return {
        how: metric_value(client, "retrieval_index_startup_seconds", how=how)
        for how in ("snapshot", "rebuild")
    }


def digest(client: httpx.Client) -> object:
    r = client.get("/admin/index-digest")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["agrees"], body
    return body["index_digest"]


def test_restart_loads_the_snapshot_and_replays_the_writes_after_it(
    tiny_model_path: Path,
    tmp_path: Path,
    service_factory: ServiceFactory,
    photo_views: dict[str, list[bytes]],
) -> None:
    data = tmp_path / "data"
    env = {"RETRIEVAL_DATA_DIR": str(data), "RETRIEVAL_INDEX_SNAPSHOT_INTERVAL_S": "3600"}
    query = photo_views["coffee"][5]

    def client(server: Launched) -> httpx.Client:
        return httpx.Client(base_url=server.url, timeout=30)

    # First start: an empty store is rebuilt, and that state snapshotted at once.
    with launched(tiny_model_path, tmp_path, env) as server, client(server) as c:
        how = startup(c)
        assert how["rebuild"] > 0 and how["snapshot"] == 0
        for name in NAMES:
            enroll(c, name, photo_views[name][:3])
        assert c.delete(f"/items/{NAMES[0]}").status_code in (200, 204)
        before = top(c, query)
        server.proc.kill()  # no snapshot at shutdown: the writes are only in the store
        server.proc.wait()
    assert (data / "index-snapshot.bin").exists()

    # Second start: the (empty) snapshot, then the change log replayed.
    with launched(tiny_model_path, tmp_path, env) as server, client(server) as c:
        how = startup(c)
        assert how["snapshot"] > 0 and how["rebuild"] == 0
        assert top(c, query) == before and NAMES[0] not in {i for i, _ in before}
        digest(c)
        enroll(c, "camera", photo_views["camera"][:2])
        before = top(c, query)
    # (left by SIGTERM, launched()'s way of stopping: a snapshot at shutdown holds everything)

    in_process = {"index_snapshot_interval_s": 3600}
    with service_factory(data_dir=data, **in_process) as c:
        assert startup(c)["snapshot"] > 0
        assert top(c, query) == before
        assert metric_value(c, "retrieval_index_items") == 4
        digest(c)

    # The same snapshot beside another store: not this store's, so a full rebuild.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(data / "index-snapshot.bin", other / "index-snapshot.bin")
    with service_factory(data_dir=other, **in_process) as c:
        how = startup(c)
        assert how["rebuild"] > 0 and how["snapshot"] == 0
        assert top(c, query) == [] and metric_value(c, "retrieval_index_items") == 0
