"""A hypothesis state machine of enroll / re-enroll the same bytes / delete an image / delete an
item / search / restart, run against the real retriever (SQLite store, blobs, FAISS index) and a
reference model kept here: item → its images' embeddings, centroids and rankings by numpy.

After every step the store lists exactly the model's images (in enrollment order), the counts
agree, and the index holds exactly the model's items with their reference centroids. A restart
closes the retriever and builds a new one on the same SQLite file, which rebuilds its index from
the store. Embeddings come from a small palette so that items with equal centroids (exact ties,
which rank by item id) are common; the step's embeddings are given to ``commit_enrollment``
directly, so the model is the centroid arithmetic and not the ONNX graph.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.metrics import ServiceMetrics
from app.retriever import Retriever, Upload
from app.service_state import build_retriever
from app.serving_session import load_embedder
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from store.errors import ItemNotFoundError
from tests.tiny_artifact import EMBEDDING_DIM

ITEMS = ("a", "b", "c", "d")
# Few, so that several items often hold the same centroid; all positive, so no sum is zero.
PALETTE = np.random.default_rng(7).uniform(0.1, 1.0, size=(3, EMBEDDING_DIM)).astype(np.float32)
QUERIES = np.random.default_rng(8).normal(size=(3, EMBEDDING_DIM)).astype(np.float32)
# float32 centroids and FAISS inner products against the float64 reference.
TOLERANCE = 1e-5


class Image:
    def __init__(self, image_id: str, data: bytes, embedding: npt.NDArray[np.float32]) -> None:
        self.image_id = image_id
        self.data = data
        self.embedding = embedding


class StoreModel(RuleBasedStateMachine):
    def __init__(self, model_path: Path, embedder: OnnxEmbedder) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.settings = Settings(
            model_path=model_path, data_dir=self.dir, allow_gpu=False, batching=False
        )
        self.embedder = embedder
        self.retriever = self._open()
        self.model: dict[str, list[Image]] = {}
        self.uploads = 0

    def _open(self) -> Retriever:
        retriever = build_retriever(self.settings, ServiceMetrics(), self.embedder)
        retriever.rebuild_index()
        return retriever

    def teardown(self) -> None:
        self.retriever.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- reference ----------------------------------------------------------------------------

    def _centroid(self, item_id: str) -> npt.NDArray[np.float64]:
        total = np.sum([i.embedding.astype(np.float64) for i in self.model[item_id]], axis=0)
        centroid: npt.NDArray[np.float64] = total / np.linalg.norm(total)
        return centroid

    # -- rules ----------------------------------------------------------------------------------

    @rule(
        item_id=st.sampled_from(ITEMS),
        colours=st.lists(st.integers(0, len(PALETTE) - 1), min_size=1, max_size=2),
    )
    def enroll(self, item_id: str, colours: list[int]) -> None:
        self._enroll(item_id, colours)

    # Twice the chance of an enrollment, and of one-image items: with deletions as likely as
    # enrollments, the index would rarely hold enough items to rank, or ties to break.
    @rule(item_id=st.sampled_from(ITEMS), colour=st.integers(0, len(PALETTE) - 1))
    def enroll_one_image(self, item_id: str, colour: int) -> None:
        self._enroll(item_id, [colour])

    def _enroll(self, item_id: str, colours: list[int]) -> None:
        uploads, embeddings = [], []
        for c in colours:
            self.uploads += 1
            uploads.append(Upload(f"{self.uploads}.png", f"image {self.uploads}".encode()))
            embeddings.append(PALETTE[c])
        result = self.retriever.commit_enrollment(item_id, uploads, np.stack(embeddings))
        assert result.created == [True] * len(uploads)
        images = self.model.setdefault(item_id, [])
        for image_id, upload, embedding in zip(result.image_ids, uploads, embeddings, strict=True):
            images.append(Image(image_id, upload.data, embedding))
        assert result.image_count == len(images)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def enroll_the_same_bytes_again(self, data: st.DataObject) -> None:
        item_id = data.draw(st.sampled_from(sorted(self.model)))
        image = data.draw(st.sampled_from(self.model[item_id]))
        # Any embedding: the bytes are known, so nothing is added and the sum is unchanged.
        upload = Upload("again.png", image.data)
        result = self.retriever.commit_enrollment(item_id, [upload], PALETTE[:1])
        assert result.image_ids == [image.image_id] and result.created == [False]
        assert result.image_count == len(self.model[item_id])

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete_image(self, data: st.DataObject) -> None:
        item_id = data.draw(st.sampled_from(sorted(self.model)))
        images = self.model[item_id]
        image = data.draw(st.sampled_from(images))
        self.retriever.delete_image(item_id, image.image_id)
        images.remove(image)
        if not images:
            del self.model[item_id]

    @rule(item_id=st.sampled_from(ITEMS))
    def delete_item(self, item_id: str) -> None:
        if item_id in self.model:
            self.retriever.delete_item(item_id)
            del self.model[item_id]
        else:
            with pytest.raises(ItemNotFoundError):
                self.retriever.delete_item(item_id)

    @rule(
        query=st.one_of(
            st.integers(0, len(PALETTE) - 1).map(lambda i: PALETTE[i]),
            st.integers(0, len(QUERIES) - 1).map(lambda i: QUERIES[i]),
        ),
        k=st.integers(1, len(ITEMS) + 1),
    )
    def search(self, query: npt.NDArray[np.float32], k: int) -> None:
        hits = self.retriever.search_by_embedding(query[np.newaxis, :], k)
        q = query.astype(np.float64) / np.linalg.norm(query)
        reference = {i: float(self._centroid(i) @ q) for i in self.model}
        ranked = sorted(reference, key=lambda i: (-reference[i], i))
        assert len(hits) == min(k, len(ranked))
        # The documented order: score descending, equal scores by item id ascending.
        assert [(h.score, h.item_id) for h in hits] == sorted(
            [(h.score, h.item_id) for h in hits], key=lambda p: (-p[0], p[1])
        )
        for hit in hits:
            assert abs(hit.score - reference[hit.item_id]) < TOLERANCE, (hit, reference)
        if hits:
            # The right items: only one scoring within float error of the k-th may swap places.
            kth = reference[ranked[len(hits) - 1]]
            assert all(reference[h.item_id] >= kth - TOLERANCE for h in hits)
        # Items of one image each, of the same embedding, tie exactly, and then rank by id.
        # (Equal sums reached in another order may differ in the last bit, so only these.)
        for a, b in itertools.pairwise(hits):
            if self._single(a.item_id) == self._single(b.item_id) is not None:
                assert a.score == b.score and a.item_id < b.item_id

    def _single(self, item_id: str) -> bytes | None:
        images = self.model[item_id]
        return images[0].embedding.tobytes() if len(images) == 1 else None

    @rule()
    def restart(self) -> None:
        self.retriever.close()
        self.retriever = self._open()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def store_holds_the_model(self) -> None:
        store = self.retriever.store
        for item_id in ITEMS:
            record = store.get_item(item_id)
            if item_id in self.model:
                assert record is not None
                assert record.image_ids == [i.image_id for i in self.model[item_id]]
            else:
                assert record is None
        images = sum(len(v) for v in self.model.values())
        assert store.counts() == (len(self.model), images)

    @invariant()
    def index_holds_the_reference_centroids(self) -> None:
        index = self.retriever.index
        assert sorted(index.item_ids()) == sorted(self.model)
        for item_id in self.model:
            row = index.get(item_id)
            assert row is not None
            np.testing.assert_allclose(row, self._centroid(item_id), atol=1e-6)


def test_store_and_index_follow_the_reference_model(tiny_model_path: Path) -> None:
    embedder = load_embedder(Settings(model_path=tiny_model_path, allow_gpu=False, batching=False))
    run_state_machine_as_test(
        lambda: StoreModel(tiny_model_path, embedder),
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
