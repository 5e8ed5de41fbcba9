"""``migrate`` run as users run it (settings from RETRIEVAL_*; the kill test in a process of
its own, killed with SIGKILL, the rest in this interpreter) on a real
SQLite file and a real Redis namespace, with a second real tiny ONNX model (another seed,
model version "2"): the dry run's counts, a full re-embed checked against the tiny model's
reference arithmetic, a run killed with SIGKILL mid-way and resumed, missing originals listed,
switch, rollback and abandon; both models' gallery leave-one-out figures against a from-scratch
oracle, and a switch refused by the quality bound unless forced."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.main import create_app
from app.model_migration import open_shadow_store, read_record, shadow_sqlite_path
from app.retriever import model_identity
from app.settings import Settings
from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from cli.main import main
from store.directory_blob_store import DirectoryBlobStore
from store.records import NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store
from tests import redis_server
from tests.cli.run_cli import cli_command, cli_env
from tests.conftest import jpeg_bytes
from tests.index.leave_one_out_oracle import oracle_rank
from tests.live_server import live_server
from tests.migration_oracle import assert_shadow_is_a_fresh_reembed as shadow_check
from tests.store.conftest import _drop_namespace
from tests.tiny_artifact import tiny_spec, write_tiny_artifact

NEW_SEED = 7


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The model the store was filled with, and the one it migrates to."""
    old = write_tiny_artifact(tmp_path_factory.mktemp("old-model"))
    new = write_tiny_artifact(tmp_path_factory.mktemp("new-model"), tiny_spec("2"), NEW_SEED)
    return old, new


@dataclass
class Setup:
    """One data directory (and Redis namespace) and the service's settings for it."""

    backend: str
    data_dir: Path
    namespace: str
    old_model: Path
    new_model: Path
    monkeypatch: pytest.MonkeyPatch | None = None
    capsys: pytest.CaptureFixture[str] | None = None

    @property
    def redis_url(self) -> str:
        return redis_server.REDIS_URL if self.backend == "redis" else ""

    @property
    def env(self) -> dict[str, str]:
        return {
            "RETRIEVAL_MODEL_PATH": str(self.old_model),
            "RETRIEVAL_DATA_DIR": str(self.data_dir),
            "RETRIEVAL_REDIS_URL": self.redis_url,
            "RETRIEVAL_REDIS_NAMESPACE": self.namespace,
        }

    @property
    def settings(self) -> Settings:
        return Settings(
            model_path=self.old_model,
            data_dir=self.data_dir,
            redis_url=self.redis_url or None,
            redis_namespace=self.namespace,
        )

    @property
    def blobs(self) -> DirectoryBlobStore:
        return DirectoryBlobStore(self.data_dir / "blobs")

    def primary(self) -> Store:
        if self.backend == "redis":
            return RedisStore(redis_server.REDIS_URL, namespace=self.namespace)
        return SqliteStore(self.data_dir / "store.sqlite3")

    def shadow(self) -> Store:
        primary = self.primary()
        try:
            record = read_record(primary)
        finally:
            primary.close()
        assert record is not None, "no migration recorded"
        return open_shadow_store(self.settings, record)

    def migrate(self, *args: str) -> tuple[int, str, str]:
        return self.run("migrate", *args)

    def run(self, *args: str) -> tuple[int, str, str]:
        """The command in this interpreter (its start-up costs seconds on a loaded machine;
        the kill test runs it in a process of its own), with the settings in the environment."""
        assert self.monkeypatch is not None and self.capsys is not None
        for name, value in self.env.items():
            self.monkeypatch.setenv(name, value)
        self.capsys.readouterr()
        rc = main(list(args))
        out, err = self.capsys.readouterr()
        return rc, out, err


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def setup(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    models: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Setup]:
    namespace = f"test-migrate-{uuid.uuid4().hex}"
    yield Setup(request.param, tmp_path / "data", namespace, *models, monkeypatch, capsys)
    if request.param == "redis":
        for ns in (namespace, f"{namespace}@*"):
            _drop_namespace(ns)


def fill(setup: Setup, items: dict[str, list[bytes]]) -> None:
    """Enroll ``items`` with the old model, as the service does (blob first, then the store)."""
    store, blobs = setup.primary(), setup.blobs
    embedder = OnnxEmbedder(setup.old_model, allow_gpu=False)
    try:
        store.claim_model_identity(model_identity(embedder))
        for item_id, originals in items.items():
            batch = np.stack([preprocess_bytes(data, embedder.spec) for data in originals])
            hashes = [hashlib.sha256(data).hexdigest() for data in originals]
            for h, data in zip(hashes, originals, strict=True):
                blobs.put(h, data)
            store.enroll(
                item_id,
                [NewImage(h, e) for h, e in zip(hashes, embedder.embed(batch), strict=True)],
                attributes_patch={"name": item_id, "n": len(originals)},
            )
    finally:
        store.close()


def synthetic(count: int, seed: int = 0) -> dict[str, list[bytes]]:
    """``count`` items of one or two small random-block JPEGs each."""
    rng = np.random.default_rng(seed)
    items = {}
    for n in range(count):
        views = []
        for _ in range(1 + n % 2):
            blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            views.append(jpeg_bytes(Image.fromarray(blocks).resize((48, 48))))
        items[f"item-{n:04d}"] = views
    return items


def state(setup: Setup) -> str | None:
    store = setup.primary()
    try:
        record = read_record(store)
        return None if record is None else record.state
    finally:
        store.close()


def assert_shadow_is_a_fresh_reembed(setup: Setup) -> int:
    primary, shadow = setup.primary(), setup.shadow()
    try:
        return shadow_check(primary, shadow, setup.blobs, tiny_spec("2"), NEW_SEED)
    finally:
        primary.close()
        shadow.close()


def test_dry_run_counts_then_the_run_reembeds_every_original_into_the_shadow(
    setup: Setup, photo_views: dict[str, list[bytes]]
) -> None:
    names = sorted(photo_views)[:5]
    fill(setup, {name: photo_views[name][:3] for name in names})
    store = setup.primary()
    try:
        gone = store.get_item(names[0])
        assert gone is not None
        store.delete_image(names[0], gone.image_ids[1])
    finally:
        store.close()

    rc, out, err = setup.migrate("--model", str(setup.new_model), "--dry-run")
    assert rc == 0, err
    assert "5 items, 14 images, 0 missing blobs" in out
    assert re.search(r"estimated model time: \d+ s \([\d.]+ ms per image, timed on 14 orig", out)
    store = setup.primary()
    try:
        assert read_record(store) is None  # a dry run writes nothing
    finally:
        store.close()

    rc, out, err = setup.migrate("--model", str(setup.new_model))
    assert rc == 0, err
    assert "5 items re-embedded (14 images), 0 already in step" in out
    assert re.search(r"re-embedded 14/14 images, 5/5 items checked, [\d.]+ images/s, ETA 0 s", err)
    assert assert_shadow_is_a_fresh_reembed(setup) == 5
    store = setup.primary()
    try:
        record = read_record(store)
        assert record is not None and record.state == "ready" and record.active == "source"
        assert Path(record.target_path).is_file()
        assert Path(record.target_path).read_bytes() == setup.new_model.read_bytes()
    finally:
        store.close()

    # Switching catches up first: nothing to do, every item is in step.
    rc, out, err = setup.migrate("--switch")
    assert rc == 0, err
    assert "0 items re-embedded (0 images), 5 already in step" in out
    assert "switched: tiny-pooled-projection v2 (dim 32) serves" in out
    assert state(setup) == "switched"
    rc, _, err = setup.migrate("--abandon")
    assert rc == 1 and "--rollback first" in err
    rc, out, err = setup.migrate("--rollback")
    assert rc == 0, err
    assert state(setup) == "ready"
    rc, out, err = setup.migrate("--abandon")
    assert rc == 0, err
    assert state(setup) is None


def test_a_run_killed_mid_way_continues_where_it_stopped(setup: Setup) -> None:
    items = synthetic(200)
    fill(setup, items)
    proc = subprocess.Popen(
        cli_command("migrate", "--model", str(setup.new_model)),
        env=cli_env(setup.env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    copied = 0
    deadline = time.monotonic() + 60
    try:
        # Killed once the shadow has some items: wait for its record and store to appear.
        while copied < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
            try:
                shadow = setup.shadow()
            except AssertionError:
                continue  # not recorded yet
            try:
                copied = shadow.counts()[0]
            finally:
                shadow.close()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "finished before it could be killed"
    shadow = setup.shadow()
    try:
        partial = shadow.counts()[0]
    finally:
        shadow.close()
    assert 10 <= partial < len(items)

    rc, out, err = setup.migrate("--model", str(setup.new_model))
    assert rc == 0, err
    resumed = re.search(r"(\d+) items re-embedded \(\d+ images\), (\d+) already in step", out)
    assert resumed is not None, out
    # The items whose shadow transaction committed before the kill are not embedded again.
    assert int(resumed[2]) >= partial - 1
    assert int(resumed[1]) + int(resumed[2]) == len(items)
    assert assert_shadow_is_a_fresh_reembed(setup) == len(items)


@pytest.fixture
def sqlite_setup(
    tmp_path: Path,
    models: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Setup:
    return Setup("sqlite", tmp_path / "data", "unused", *models, monkeypatch, capsys)


def test_missing_originals_are_listed_and_block_the_switch(
    sqlite_setup: Setup, photo_views: dict[str, list[bytes]]
) -> None:
    # On SQLite only: what is missing is the blob backend's, the store's part is the same.
    setup = sqlite_setup
    names = sorted(photo_views)[:3]
    fill(setup, {name: photo_views[name][:2] for name in names})
    rc, _, err = setup.migrate("--switch")
    assert rc == 1 and "no migration is recorded" in err
    lost = hashlib.sha256(photo_views[names[1]][0]).hexdigest()
    assert setup.blobs.delete(lost)

    rc, out, err = setup.migrate("--model", str(setup.new_model), "--dry-run")
    assert rc == 1
    assert "3 items, 6 images, 1 missing blobs" in out
    assert f"{names[1]} " in err and f"{lost}: blob missing" in err

    rc, out, err = setup.migrate("--model", str(setup.new_model))
    assert rc == 1
    assert "1 images left out" in err and f"{lost}: blob missing" in err
    rc, out, err = setup.migrate("--switch")
    assert rc == 1
    assert "not switched" in err and f"{lost}: blob missing" in err
    assert state(setup) == "re-embedding"

    # A blob only the shadow still references (an image deleted from the primary behind the
    # service's back) is no orphan for the sweep.
    store = setup.primary()
    try:
        record = store.get_item(names[2])
        assert record is not None
        store.delete_image(names[2], record.image_ids[0])
    finally:
        store.close()
    kept = hashlib.sha256(photo_views[names[2]][0]).hexdigest()
    rc, _, err = setup.run("compact", "--grace", "0")
    assert rc == 0, err
    assert setup.blobs.exists(kept)


def test_finish_makes_the_new_models_store_the_one_the_settings_name(
    sqlite_setup: Setup, photo_views: dict[str, list[bytes]]
) -> None:
    setup = sqlite_setup
    names = sorted(photo_views)[:3]
    fill(setup, {name: photo_views[name][:2] for name in names})
    assert setup.migrate("--model", str(setup.new_model))[0] == 0
    rc, _, err = setup.migrate("--finish")
    assert rc == 1 and "--switch first" in err
    assert setup.migrate("--switch")[0] == 0
    store = setup.primary()
    try:
        record = read_record(store)
        assert record is not None
        rc, _, err = setup.migrate("--finish")  # a service would hold the file open like this
        assert rc == 1 and "stop the service first" in err
    finally:
        store.close()

    rc, out, err = setup.migrate("--finish")
    assert rc == 0, err
    assert f"RETRIEVAL_MODEL_PATH={record.target_path}" in out
    assert (setup.data_dir / "store.retired-v1.sqlite3").is_file()
    assert not shadow_sqlite_path(setup.settings, record).exists()
    # A service on the same settings, with the new model's file, serves the new store as its
    # own: no migration recorded, every item there, searches by the new model.
    app = create_app(Settings(model_path=Path(record.target_path), data_dir=setup.data_dir))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        assert (info["model"]["model_version"], info["items"], info["images"]) == ("2", 3, 6)
        assert "migration" not in info or info["migration"] is None
        hits = client.post(
            "/search", params={"k": 1}, files={"image": ("q.jpg", photo_views[names[1]][0])}
        ).json()["results"]
        assert hits[0]["item_id"] == names[1]
        assert hits[0]["centroid_score"] > 0.9


def loo_figures(store: Store) -> tuple[float, float]:
    """Leave-one-image-out R@1 and MRR over every image of every multi-image item, from
    scratch (the gallery is smaller than the command's sample)."""
    ids = [s.item_id for s in store.iter_item_states() if s.count]
    images = store.item_images(ids)
    gallery = {i: [r.embedding for r in images[i]] for i in ids}
    ranks = [
        oracle_rank(gallery, item, n)
        for item, rows in gallery.items()
        if len(rows) >= 2
        for n in range(len(rows))
    ]
    return sum(r == 1 for r in ranks) / len(ranks), sum(1 / r for r in ranks) / len(ranks)


def test_both_models_gallery_figures_are_printed_and_a_worse_model_is_refused(
    setup: Setup, photo_views: dict[str, list[bytes]]
) -> None:
    names = sorted(photo_views)[:6]
    fill(setup, {name: photo_views[name][:3] for name in names})
    rc, out, err = setup.migrate("--model", str(setup.new_model))
    assert rc == 0, err
    primary, shadow = setup.primary(), setup.shadow()
    try:
        old, new = loo_figures(primary), loo_figures(shadow)
    finally:
        primary.close()
        shadow.close()
    r1 = re.search(r"^R@1 +([\d.]+) +([\d.]+) +([-+][\d.]+)$", out, re.M)
    mrr = re.search(r"^MRR +([\d.]+) +([\d.]+) +([-+][\d.]+)$", out, re.M)
    assert r1 is not None and mrr is not None, out
    assert "leave-one-image-out on 18 sampled images" in out
    np.testing.assert_allclose([float(r1[1]), float(r1[2])], [old[0], new[0]], atol=5e-5)
    np.testing.assert_allclose([float(mrr[1]), float(mrr[2])], [old[1], new[1]], atol=5e-5)
    # A bound no model can meet (R@1 up by more than 1) refuses; --force switches anyway.
    rc, _, err = setup.migrate("--switch", "--max-r1-drop", "-1.5")
    assert rc == 1 and "not switched" in err and "--force" in err
    assert state(setup) == "ready"
    rc, out, err = setup.migrate("--switch", "--max-r1-drop", "-1.5", "--force")
    assert rc == 0, err
    assert state(setup) == "switched"
