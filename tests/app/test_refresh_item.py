"""A write to a retriever's store made around it (a migration's re-embedding into the shadow)
is brought into its index by ``refresh_item``; ``index_agrees_with_store`` tells an index in
step from one that is not, so a switch can skip the rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.retriever import Retriever
from artifact.image_decode import decode_image
from artifact.onnx_embedder import OnnxEmbedder
from store.records import NewImage
from tests.app.test_retriever import make_retriever, unit, uploads


@pytest.fixture(scope="module")
def embedder(tiny_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model_path, allow_gpu=False)


@pytest.fixture
def retriever(embedder: OnnxEmbedder, tmp_path: Path) -> Iterator[Retriever]:
    r = make_retriever(embedder, tmp_path)
    r.rebuild_index()
    yield r
    r.close()


def test_writes_around_the_retriever_are_refreshed_and_told_apart(
    retriever: Retriever,
    embedder: OnnxEmbedder,
    photo_views: dict[str, list[bytes]],
) -> None:
    for name in ("astronaut", "chelsea"):
        retriever.enroll(name, uploads(photo_views[name][:2]))
    assert retriever.index_agrees_with_store()
    # Written to the store directly, as the re-embedding job writes a shadow.
    view = photo_views["coffee"][0]
    raw = embedder.embed_images([decode_image(view)])[0]
    retriever.store.enroll("coffee", [NewImage("c" * 64, raw)])
    assert not retriever.index_agrees_with_store()  # an item the index lacks
    retriever.refresh_item("coffee")
    assert retriever.index_agrees_with_store()
    np.testing.assert_allclose(
        retriever.index.get("coffee"), unit(raw.astype(np.float64)), atol=1e-6
    )
    retriever.store.enroll("astronaut", [NewImage("d" * 64, raw)])
    assert not retriever.index_agrees_with_store()  # an item at an older version
    retriever.refresh_item("astronaut")
    assert retriever.index_agrees_with_store()
    retriever.store.delete_item("chelsea")
    assert not retriever.index_agrees_with_store()  # an item the store no longer holds
    paused: list[int] = []
    assert not retriever.index_agrees_with_store(pause=lambda: paused.append(1))
    retriever.refresh_item("chelsea")
    assert retriever.index.get("chelsea") is None and retriever.index_agrees_with_store()
