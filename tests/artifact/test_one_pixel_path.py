"""One pixel path under a JPEG draft: the service and ``model.evaluate`` embed a large JPEG
identically, both reading the draft from the model's contract (neither has a setting of its
own), and what they embed is the drafted decode, not the full one."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from app.main import create_app
from app.settings import Settings
from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from model.data.sample import Sample
from model.data.sample_photos import load_photo
from model.evaluation.embed_split import onnx_embedder
from tests.live_server import live_server
from tests.tiny_artifact import TINY_SPEC, reference_embeddings, write_tiny_artifact

# Over the tiny artifact's 32×32 input, 2 × 32 = 64 is the gate: a 300×260 JPEG decodes at 1/8.
DRAFT_SPEC = dataclasses.replace(
    TINY_SPEC, jpeg_draft_min_ratio=2.0, model_version="1+jpeg-draft-2"
)


@pytest.fixture(scope="module")
def draft_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("draft-model"), DRAFT_SPEC)


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    buf = io.BytesIO()
    load_photo("chelsea").resize((300, 260), Image.Resampling.LANCZOS).save(
        buf, format="JPEG", quality=90
    )
    path = tmp_path_factory.mktemp("photos") / "chelsea.jpg"
    path.write_bytes(buf.getvalue())
    return path


def expected_embedding(raw: bytes, spec: PreprocessSpec) -> npt.NDArray[np.float64]:
    """The tiny graph's output, computed step by step, on ``spec``'s pixels of ``raw``."""
    return reference_embeddings(preprocess_bytes(raw, spec)[None])[0]


def test_the_model_carries_the_draft(draft_model: Path, large_jpeg: Path) -> None:
    spec = OnnxEmbedder(draft_model, allow_gpu=False).spec
    assert spec.jpeg_draft_min_ratio == 2.0
    raw = large_jpeg.read_bytes()
    full = dataclasses.replace(spec, jpeg_draft_min_ratio=None)
    # The draft changes this photo's input, so the tests below can tell the two decodes apart.
    assert not np.array_equal(preprocess_bytes(raw, spec), preprocess_bytes(raw, full))


def test_the_service_embeds_the_drafted_decode(
    draft_model: Path, large_jpeg: Path, tmp_path: Path
) -> None:
    raw = large_jpeg.read_bytes()
    app = create_app(Settings(model_path=draft_model, data_dir=tmp_path / "data"))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/items/cat/images", files={"images": ("chelsea.jpg", raw)})
        assert r.status_code == 201, r.text
        store = app.state.service.retriever.store
        (stored,) = [rec.embedding for rec in store.iter_images()]
    np.testing.assert_allclose(stored, expected_embedding(raw, DRAFT_SPEC), rtol=0, atol=1e-5)
    full = expected_embedding(raw, TINY_SPEC)
    assert np.abs(stored - full).max() > 1e-3


def test_evaluation_embeds_the_drafted_decode_as_the_service_does(
    draft_model: Path, large_jpeg: Path
) -> None:
    raw = large_jpeg.read_bytes()
    (via_eval,) = onnx_embedder(draft_model)([Sample(path=str(large_jpeg), item="cat")])
    np.testing.assert_allclose(via_eval, expected_embedding(raw, DRAFT_SPEC), rtol=0, atol=1e-5)
