"""Search evidence over real HTTP with the real model (``RETRIEVAL_RANKING=two_stage``, the
service's default): every result's ``best_image_id`` is the item's image whose own embedding
(embedded alone here) scores highest against the query, ``image_count`` its images,
``centroid_score`` the cosine to the oracle's centroid, ``score`` the documented fusion and the
order by it (ties by item id); blank, uniform and tiny images match nothing; and a restart with
the per-image embeddings read from the store (budget 0), then one that fills them from the
store again (``warming`` -> ``memory``), answer exactly as the first service did."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from app.main import create_app
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from tests.app.centroid_oracle import Vector, raw_embedding, unit, weighted_centroid
from tests.conftest import jpeg_bytes
from tests.live_server import live_server

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
SINGLE = "flower"  # an item of one image: the rule's prior
GALLERY = slice(0, 3)
# Float32 inference of 1280-dim embeddings against a float64 oracle.
COSINE_ATOL = 1e-4
# The held rows are float16: an image cosine is within ~1e-3 of float64's.
IMAGE_ATOL = 2e-3


@dataclass
class Enrolled:
    image_ids: dict[str, list[str]]  # item -> image ids in enrollment order
    units: dict[str, list[Vector]]  # item -> unit embeddings, same order
    centroids: dict[str, Vector]


def png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def embedder(default_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(default_model_path, allow_gpu=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("search-evidence") / "data"


@contextmanager
def service(default_model_path: Path, data_dir: Path, **overrides: Any) -> Iterator[httpx.Client]:
    settings = Settings(
        model_path=default_model_path, data_dir=data_dir, ranking="two_stage", **overrides
    )
    with (
        live_server(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


def wait_for_mode(client: httpx.Client, mode: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        info: dict[str, Any] = client.get("/info").json()
        if info["image_embeddings"]["mode"] == mode:
            return info
        assert time.monotonic() < deadline, info["image_embeddings"]
        time.sleep(0.05)


def search(client: httpx.Client, *views: bytes, k: int = 10) -> list[dict[str, Any]]:
    files = [("images", (f"q{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]
    r = client.post("/search", params={"k": k}, files=files)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


QUERIES = {f"{item}-view3": (item, 3) for item in ITEMS} | {f"{SINGLE}-view1": (SINGLE, 1)}


@pytest.fixture(scope="module")
def first(
    default_model_path: Path,
    data_dir: Path,
    embedder: OnnxEmbedder,
    photo_views: dict[str, list[bytes]],
) -> Iterator[tuple[httpx.Client, Enrolled]]:
    """The first service (memory mode), with the items enrolled and the oracle's view."""
    with service(default_model_path, data_dir) as client:
        gallery = {item: photo_views[item][GALLERY] for item in ITEMS}
        gallery[SINGLE] = photo_views[SINGLE][:1]
        enrolled = Enrolled({}, {}, {})
        for item, views in gallery.items():
            files = [("images", (f"{item}-{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]
            r = client.post(f"/items/{item}/images", files=files)
            assert r.status_code == 201, r.text
            raw = [raw_embedding(embedder, v) for v in views]
            enrolled.image_ids[item] = r.json()["image_ids"]
            enrolled.units[item] = [unit(e) for e in raw]
            enrolled.centroids[item] = weighted_centroid(raw)
        wait_for_mode(client, "memory")
        yield client, enrolled


@pytest.fixture(scope="module")
def first_answers(
    first: tuple[httpx.Client, Enrolled], photo_views: dict[str, list[bytes]]
) -> dict[str, list[dict[str, Any]]]:
    client, _ = first
    return {name: search(client, photo_views[item][view]) for name, (item, view) in QUERIES.items()}


def check_evidence(
    results: list[dict[str, Any]], query: Vector, enrolled: Enrolled, alpha: float
) -> None:
    """Each result against the brute force over its item's images and centroid."""
    for hit in results:
        item = hit["item_id"]
        cosines = {
            i: float(u @ query)
            for i, u in zip(enrolled.image_ids[item], enrolled.units[item], strict=True)
        }
        best = max(cosines.values())
        assert hit["best_image_id"] in cosines, hit
        # The highest-scoring image, or one within float16's reach of it.
        assert cosines[hit["best_image_id"]] >= best - IMAGE_ATOL, (hit, cosines)
        assert hit["image_score"] == pytest.approx(best, abs=IMAGE_ATOL)
        assert hit["image_count"] == len(cosines)
        centroid = float(enrolled.centroids[item] @ query)
        assert hit["centroid_score"] == pytest.approx(centroid, abs=COSINE_ATOL)
        fused = alpha * hit["centroid_score"] + (1 - alpha) * hit["image_score"]
        assert hit["score"] == pytest.approx(fused, abs=1e-5)
        assert 0.0 <= hit["confidence"] <= 1.0
        assert hit["match"] == (hit["confidence"] >= 0.5)
    keys = [(-h["score"], h["item_id"]) for h in results]
    assert keys == sorted(keys)


def test_every_result_carries_the_brute_force_evidence(
    first: tuple[httpx.Client, Enrolled],
    first_answers: dict[str, list[dict[str, Any]]],
    embedder: OnnxEmbedder,
    photo_views: dict[str, list[bytes]],
) -> None:
    client, enrolled = first
    info = client.get("/info").json()
    assert info["ranking"]["mode"] == "two_stage"
    alpha = float(info["ranking"]["alpha"])
    memory = info["image_embeddings"]
    assert memory["items"] == len(ITEMS) + 1 and memory["images"] == 3 * len(ITEMS) + 1
    assert memory["bytes"] >= memory["images"] * 2 * info["embedding_dim"]
    for name, (item, view) in QUERIES.items():
        results = first_answers[name]
        assert {h["item_id"] for h in results} == set(enrolled.image_ids), name
        query = unit(raw_embedding(embedder, photo_views[item][view]))
        check_evidence(results, query, enrolled, alpha)
        assert results[0]["item_id"] == item, (name, results[0])  # a new view finds its item
    # A set query of two further views: the same evidence against its query centroid.
    views = photo_views["coffee"][4:6]
    query = weighted_centroid([raw_embedding(embedder, v) for v in views])
    check_evidence(search(client, *views), query, enrolled, alpha)


def test_neighbours_carry_the_evidence_of_the_items_centroid(
    first: tuple[httpx.Client, Enrolled],
) -> None:
    client, enrolled = first
    alpha = float(client.get("/info").json()["ranking"]["alpha"])
    r = client.get("/items/chelsea/neighbours", params={"k": 10})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [h["item_id"] for h in results if h["item_id"] == "chelsea"] == []
    assert len(results) == len(enrolled.image_ids) - 1
    check_evidence(results, enrolled.centroids["chelsea"], enrolled, alpha)


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(jpeg_bytes(Image.new("RGB", (320, 240), (255, 255, 255))), id="blank-white"),
        pytest.param(png((0, 0, 0), (1, 1)), id="1x1-black"),
        pytest.param(png((200, 30, 40), (64, 64)), id="uniform-red"),
        pytest.param(png((128, 128, 128), (300, 300)), id="mid-grey"),
    ],
)
def test_degenerate_queries_match_nothing(
    first: tuple[httpx.Client, Enrolled], image: bytes
) -> None:
    client, enrolled = first
    files = {"images": ("q.png", image, "application/octet-stream")}
    r = client.post("/search", params={"k": 10}, files=files)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(enrolled.image_ids)  # still ranked, with evidence
    assert all(h["best_image_id"] in enrolled.image_ids[h["item_id"]] for h in results)
    assert [(h["match"], h["confidence"]) for h in results] == [(False, 0.0)] * len(results)


def assert_same_answers(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(h["item_id"], h["best_image_id"], h["image_count"], h["match"]) for h in got] == [
        (h["item_id"], h["best_image_id"], h["image_count"], h["match"]) for h in expected
    ]
    for field in ("score", "image_score", "centroid_score", "confidence"):
        np.testing.assert_allclose(
            [h[field] for h in got], [h[field] for h in expected], rtol=0, atol=1e-5
        )


def test_store_read_mode_and_a_refill_answer_as_memory_mode(
    first_answers: dict[str, list[dict[str, Any]]],
    default_model_path: Path,
    data_dir: Path,
    photo_views: dict[str, list[bytes]],
) -> None:
    # The first service stays up (module fixture): SQLite takes a second process's connection.
    with service(default_model_path, data_dir, image_embeddings_budget_mb=0) as store_mode:
        info = store_mode.get("/info").json()["image_embeddings"]
        assert info["mode"] == "store" and info["bytes"] == 0
        for name, (item, view) in QUERIES.items():
            assert_same_answers(search(store_mode, photo_views[item][view]), first_answers[name])
    with service(default_model_path, data_dir) as refilled:
        wait_for_mode(refilled, "memory")
        for name, (item, view) in QUERIES.items():
            assert_same_answers(search(refilled, photo_views[item][view]), first_answers[name])
