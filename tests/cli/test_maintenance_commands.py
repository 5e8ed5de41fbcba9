"""``compact``, ``backup`` and ``restore`` run as users run them (a fresh interpreter, settings
from RETRIEVAL_* variables) against the data of a real service: the backup is taken while it
serves, and a service started on the restored data answers exactly as the original did."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from store.blob_sweep import BLOB_SWEEP_GRACE_S
from tests.cli.run_cli import run_cli
from tests.live_server import live_server
from tests.tiny_artifact import write_tiny_artifact


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("tiny-artifact"))


@contextmanager
def serving(model: Path, data_dir: Path) -> Iterator[httpx.Client]:
    app = create_app(Settings(model_path=model, data_dir=data_dir, redis_url=None))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def cli(model: Path, data_dir: Path, *args: str) -> tuple[int, str, str]:
    env = {
        "RETRIEVAL_MODEL_PATH": str(model),
        "RETRIEVAL_DATA_DIR": str(data_dir),
        "RETRIEVAL_REDIS_URL": "",
    }
    done = run_cli(*args, env=env)
    return done.returncode, done.stdout, done.stderr


def answers(client: httpx.Client, queries: list[bytes]) -> dict[str, object]:
    """Everything a client can read: the item list, each item, and each query's ranking."""
    items = client.get("/items", params={"limit": 1000}).json()
    out: dict[str, object] = {"items": items}
    for summary in items["items"]:
        out[summary["item_id"]] = client.get(f"/items/{summary['item_id']}").json()
    for i, query in enumerate(queries):
        r = client.post("/search", params={"k": 10}, files={"image": ("q.jpg", query)})
        assert r.status_code == 200, r.text
        out[f"search {i}"] = r.json()
    return out


def test_backup_of_a_serving_store_restores_to_a_service_that_answers_the_same(
    tiny_model: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    names = sorted(photo_views)[:5]
    queries = [photo_views[name][5] for name in names]
    with serving(tiny_model, live) as client:
        for name in names:
            files = [("images", (f"{i}.jpg", v)) for i, v in enumerate(photo_views[name][:4])]
            assert client.post(f"/items/{name}/images", files=files).status_code == 201
        gone = client.get(f"/items/{names[0]}").json()["image_ids"][0]
        assert client.delete(f"/items/{names[0]}/images/{gone}").status_code == 204
        assert client.delete(f"/items/{names[1]}").status_code == 204
        before = answers(client, queries)
        # An orphan blob and a temporary file, both older than the grace period, as a crash
        # between a blob write and its commit leaves them.
        orphan = b"bytes whose enrollment never committed"
        orphan_path = _blob_path(live / "blobs", orphan)
        orphan_path.parent.mkdir(parents=True)
        orphan_path.write_bytes(orphan)
        leftover = orphan_path.with_name(".tmp-crashed")
        leftover.write_bytes(b"half")
        for path in (orphan_path, leftover):
            os.utime(path, (1e9, 1e9))

        code, out, err = cli(tiny_model, live, "compact")
        assert code == 0, err
        assert "1 orphan blobs and 1 temporary files removed" in out and "sqlite:" in out
        assert not orphan_path.exists() and not orphan_path.parent.parent.exists()

        code, out, err = cli(tiny_model, live, "backup", "--out", str(backup))
        assert code == 0, err
        assert "4 items, 15 images, 15 of 15 referenced blobs" in out
        assert answers(client, queries) == before  # served on, unchanged

    code, out, err = cli(tiny_model, restored, "restore", "--from", str(backup))
    assert code == 0, err
    assert "every referenced content hash has its blob" in out
    with serving(tiny_model, restored) as client:
        assert answers(client, queries) == before

    code, _, err = cli(tiny_model, restored, "restore", "--from", str(backup))
    assert code == 1 and "--force" in err


def test_restore_lists_every_referenced_blob_it_lacks(
    tiny_model: Path, tmp_path: Path, photo_views: dict[str, list[bytes]]
) -> None:
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    views = photo_views["coffee"][:2]
    with serving(tiny_model, live) as client:
        files = [("images", (f"{i}.jpg", v)) for i, v in enumerate(views)]
        assert client.post("/items/coffee/images", files=files).status_code == 201
    code, _, err = cli(tiny_model, live, "backup", "--out", str(backup))
    assert code == 0, err
    lost = hashlib.sha256(views[1]).hexdigest()
    _blob_path(backup / "blobs", views[1]).unlink()

    code, out, err = cli(tiny_model, restored, "restore", "--from", str(backup))
    assert code == 1
    assert "1 items, 2 images, 1 blobs" in out
    assert f"1 referenced content hashes without a blob:\n  {lost}" in err


def test_commands_refuse_a_missing_store_and_document_the_grace(
    tiny_model: Path, tmp_path: Path
) -> None:
    code, _, err = cli(tiny_model, tmp_path / "nothing", "backup", "--out", str(tmp_path / "b"))
    assert code == 1 and "no store at" in err
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "b").exists()
    done = run_cli("compact", "--help")
    assert done.returncode == 0 and f"default: {BLOB_SWEEP_GRACE_S:g}" in done.stdout


def _blob_path(root: Path, data: bytes) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    return root / digest[:2] / digest[2:4] / digest
