"""RETRIEVAL_INDEX chooses the centroid index: settings checked at start-up, and over real HTTP
an IVF service (trained on a few hundred clustered random items, probing 6 of its 16 lists)
answers the same top-1 as a flat one on enrolled photos, samples recall and says so on
/metrics and /info; a Milvus Lite service enrolls, searches and deletes like flat.

One app per index kind for the module (Milvus Lite's start-up is slow), all on the tiny
artifact, each on its own SQLite store filled with the same random items first.
"""

from __future__ import annotations

import inspect
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from app.error_redaction import Redactor
from app.index_choice import KINDS
from app.main import create_app
from app.server import main as server_main
from app.settings import IndexKind, Settings
from index.ivf_centroid_index import IvfCentroidIndex
from store.records import ModelIdentity, NewImage
from store.sqlite_store import SqliteStore
from tests.app.metrics_text import metric_value
from tests.live_server import live_server
from tests.tiny_artifact import TINY_SPEC

RANDOM_ITEMS = 400
MIN_TRAIN_ITEMS = 200
NPROBE = 6
TOKEN = "root:tok-s3cret-not-for-clients"

# -- settings -----------------------------------------------------------------------------


def test_every_kind_has_a_constructor() -> None:
    assert set(KINDS) == set(get_args(IndexKind))


def test_ivf_defaults_are_the_index_classs_defaults() -> None:
    params = inspect.signature(IvfCentroidIndex.__init__).parameters
    fields = Settings.model_fields
    for knob in ("nprobe", "refine", "min_train_items", "retrain_growth", "codes"):
        assert fields[f"ivf_{knob}"].default == params[knob].default, knob


def test_milvus_without_a_uri_is_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETRIEVAL_INDEX", "milvus")
    monkeypatch.delenv("RETRIEVAL_MILVUS_URI", raising=False)
    assert server_main([]) == 1
    assert "index=milvus needs RETRIEVAL_MILVUS_URI" in capsys.readouterr().err
    with pytest.raises(ValidationError, match="milvus_uri must be"):
        Settings(index="milvus", milvus_uri="milvus:19530")  # neither a URL nor a .db file
    with pytest.raises(ValidationError, match="index"):
        Settings(index="hnsw")


def test_the_collection_is_one_per_redis_namespace_and_fixed_for_sqlite() -> None:
    assert Settings().milvus_collection_name == "centroids"
    redis = "redis://127.0.0.1:6379/0"
    names = {
        Settings(redis_url=redis, redis_namespace=ns).milvus_collection_name
        for ns in ("cr", "a-b", "a_b", "a_2db", "é")
    }
    assert len(names) == 5 and "centroids_cr" in names
    assert Settings(redis_url=redis, milvus_collection="mine").milvus_collection_name == "mine"
    with pytest.raises(ValidationError, match="milvus_collection"):
        Settings(milvus_collection="9-lives")


def test_the_token_and_milvus_address_stay_out_of_error_texts() -> None:
    settings = Settings(
        index="milvus", milvus_uri="http://user:pw@milvus.internal:19530", milvus_token=TOKEN
    )
    assert TOKEN not in repr(settings) and TOKEN not in settings.model_dump_json()
    said = Redactor(settings)(
        f"connect http://user:pw@milvus.internal:19530 failed (token {TOKEN}) at "
        "milvus.internal:19530"
    )
    assert TOKEN not in said and "milvus.internal" not in said and "pw" not in said, said
    lite = Redactor(Settings(index="milvus", milvus_uri="/srv/secret/milvus.db"))
    assert "/srv/secret" not in lite("cannot open /srv/secret/milvus.db")


# -- services -----------------------------------------------------------------------------


def random_items(seed: int = 5) -> dict[str, np.ndarray]:
    """Clustered random unit rows ``(32,)`` float32: 20 clusters, so the IVF has lists to
    tell apart (i.i.d. rows would have no neighbours)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, TINY_SPEC.embedding_dim))
    x = centres[rng.integers(0, 20, RANDOM_ITEMS)] + rng.normal(
        scale=0.3, size=(RANDOM_ITEMS, TINY_SPEC.embedding_dim)
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return {f"random-{i:03d}": row.astype(np.float32) for i, row in enumerate(x)}


def filled_data_dir(directory: Path) -> Path:
    """A data directory whose SQLite store holds ``random_items`` (through the store API)."""
    directory.mkdir(parents=True, exist_ok=True)
    # No fsync per commit: a test's throw-away store, filled before the service opens it.
    store = SqliteStore(directory / "store.sqlite3", durable=False)
    store.claim_model_identity(
        ModelIdentity(TINY_SPEC.model_name, TINY_SPEC.model_version, TINY_SPEC.embedding_dim)
    )
    for i, (item_id, row) in enumerate(random_items().items()):
        store.enroll(item_id, [NewImage(f"{i:064x}", row)])
    store.close()
    return directory


@pytest.fixture(scope="module")
def random_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Filled once; each service gets a copy of its files."""
    return filled_data_dir(tmp_path_factory.mktemp("random-store"))


@contextmanager
def service(
    directory: Path, model_path: Path, env: dict[str, str], random_store: Path
) -> Iterator[httpx.Client]:
    """The real app on a copy of ``random_store`` in ``directory``, configured through
    RETRIEVAL_* variables."""
    directory.mkdir(parents=True, exist_ok=True)
    for part in random_store.glob("store.sqlite3*"):
        shutil.copy(part, directory / part.name)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        settings = Settings(
            model_path=model_path,
            data_dir=directory,
            keep_blobs=False,
            allow_gpu=False,
        )
    app = create_app(settings)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def retriever_of(client: httpx.Client) -> Any:
    return client.app.state.service.retriever  # type: ignore[attr-defined]


def enroll_photos(client: httpx.Client, photo_views: dict[str, list[bytes]]) -> None:
    for item, views in photo_views.items():
        files = [("images", (f"{item}-{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views[:4])]
        r = client.post(f"/items/{item}/images", files=files)
        assert r.status_code == 201, r.text


def search(client: httpx.Client, view: bytes, k: int) -> list[tuple[str, float]]:
    r = client.post("/search", params={"k": k}, files={"image": ("q.jpg", view)})
    assert r.status_code == 200, r.text
    return [(hit["item_id"], hit["score"]) for hit in r.json()["results"]]


def queries(photo_views: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
    """The views not enrolled, each named after its photo."""
    return [(item, view) for item, views in photo_views.items() for view in views[4:]]


@pytest.fixture(scope="module")
def flat(
    tiny_model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    photo_views: dict[str, list[bytes]],
    random_store: Path,
) -> Iterator[httpx.Client]:
    with service(tmp_path_factory.mktemp("flat"), tiny_model_path, {}, random_store) as client:
        enroll_photos(client, photo_views)
        yield client


@pytest.fixture(scope="module")
def ivf(
    tiny_model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    photo_views: dict[str, list[bytes]],
    random_store: Path,
) -> Iterator[httpx.Client]:
    env = {
        "RETRIEVAL_INDEX": "ivf",
        "RETRIEVAL_IVF_MIN_TRAIN_ITEMS": str(MIN_TRAIN_ITEMS),
        "RETRIEVAL_IVF_NPROBE": str(NPROBE),
        "RETRIEVAL_RECALL_SAMPLE_RATE": "1",
        "RETRIEVAL_RECALL_SAMPLE_QUEUE": "64",
    }
    with service(tmp_path_factory.mktemp("ivf"), tiny_model_path, env, random_store) as client:
        enroll_photos(client, photo_views)
        yield client


@pytest.fixture(scope="module")
def milvus(
    tiny_model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    photo_views: dict[str, list[bytes]],
    random_store: Path,
) -> Iterator[httpx.Client]:
    pytest.importorskip("pymilvus")
    directory = tmp_path_factory.mktemp("milvus")
    env = {
        "RETRIEVAL_INDEX": "milvus",
        "RETRIEVAL_MILVUS_URI": str(directory / "milvus.db"),
        "RETRIEVAL_MILVUS_TOKEN": TOKEN,
    }
    with service(directory / "data", tiny_model_path, env, random_store) as client:
        enroll_photos(client, photo_views)
        yield client


def test_ivf_answers_the_same_top_1_as_flat_on_enrolled_photos(
    flat: httpx.Client, ivf: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    index = retriever_of(ivf).index
    # Really approximate: trained at start-up on the random items, probing 6 of its 16 lists.
    assert isinstance(index, IvfCentroidIndex) and index.trained
    assert index.trained_at == RANDOM_ITEMS and index.nlist > NPROBE
    assert len(index) == RANDOM_ITEMS + len(photo_views)
    found_photos = 0
    for _, view in queries(photo_views):
        want, got = search(flat, view, 3), search(ivf, view, 3)
        assert got[0][0] == want[0][0]
        assert got[0][1] == pytest.approx(want[0][1], abs=1e-5)
        found_photos += want[0][0] in photo_views
    # The queries are near the photos' items, not lost among the random ones.
    assert found_photos >= len(queries(photo_views)) // 2


def test_info_names_the_index_and_its_parameters(flat: httpx.Client, ivf: httpx.Client) -> None:
    assert flat.get("/info").json()["index"] == {"kind": "flat"}
    assert ivf.get("/info").json()["index"] == {
        "kind": "ivf",
        "nprobe": NPROBE,
        "refine": 4,
        "min_train_items": MIN_TRAIN_ITEMS,
        "retrain_growth": 2.0,
        "codes": "fp16",
        "recall_sample_rate": 1.0,
    }


def test_sampled_recall_reaches_metrics_for_ivf_only(
    flat: httpx.Client, ivf: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    sampler = retriever_of(ivf).recall_sampler
    assert sampler is not None and retriever_of(flat).recall_sampler is None
    before = metric_value(ivf, "retrieval_recall_samples_total", outcome="measured")
    views = queries(photo_views)
    for i, (_, view) in enumerate(views):
        search(ivf, view, 10 if i % 2 else 3)  # both: the first 10 given, or searched again
        search(flat, view, 10)
    assert sampler.wait_idle(10)
    measured = metric_value(ivf, "retrieval_recall_samples_total", outcome="measured")
    assert measured - before == len(views)
    assert metric_value(ivf, "retrieval_recall_samples_total", outcome="dropped") == 0
    assert metric_value(ivf, "retrieval_index_recall_at_10_count") == measured
    total = metric_value(ivf, "retrieval_index_recall_at_10_sum")
    assert 0 < total <= measured
    recent = metric_value(ivf, "retrieval_index_recall_at_10_recent")
    assert 0 < recent <= 1
    # Flat is exact: nothing sampled, the recent mean not a number.
    assert metric_value(flat, "retrieval_recall_samples_total", outcome="measured") == 0
    assert metric_value(flat, "retrieval_index_recall_at_10_count") == 0
    assert math.isnan(metric_value(flat, "retrieval_index_recall_at_10_recent"))


def test_milvus_lite_enrolls_searches_and_deletes_like_flat(
    flat: httpx.Client, milvus: httpx.Client, photo_views: dict[str, list[bytes]]
) -> None:
    info = milvus.get("/info")
    assert info.json()["index"] == {
        "kind": "milvus",
        "collection": "centroids",
        "lite": True,
        "timeout_s": 1.0,
        "admin_timeout_s": 30.0,
    }
    assert info.json()["index_items"] == RANDOM_ITEMS + len(photo_views)
    for path in ("/info", "/readyz", "/metrics"):
        assert TOKEN not in milvus.get(path).text, path
    for _, view in queries(photo_views):
        want, got = search(flat, view, 3), search(milvus, view, 3)
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
    _, view = queries(photo_views)[0]
    top = search(milvus, view, 1)[0][0]
    assert milvus.delete(f"/items/{top}").status_code == 204
    assert top not in [i for i, _ in search(milvus, view, 10)]
