"""The tiny artifact the fast app tests run on: accepted by OnnxEmbedder as the service loads it,
laid out as the exporter lays out its output, and computing what its docstring says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import PreprocessSpec
from tests.tiny_artifact import TINY_SPEC, reference_embeddings, write_tiny_artifact


@pytest.fixture(scope="module")
def embedder(tiny_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model_path, allow_gpu=False)


def test_the_contract_is_in_the_graph_and_beside_it(
    embedder: OnnxEmbedder, tiny_model_path: Path
) -> None:
    assert embedder.spec == TINY_SPEC
    beside = tiny_model_path.with_suffix(".json").read_text()
    assert PreprocessSpec.from_json(beside) == TINY_SPEC


def test_the_graph_computes_the_reference_steps(embedder: OnnxEmbedder) -> None:
    batch = np.random.default_rng(3).integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    got = embedder.embed(batch)
    assert got.shape == (7, TINY_SPEC.embedding_dim) and got.dtype == np.float32
    # Folding three steps into one float32 matrix costs rounding, nothing more.
    np.testing.assert_allclose(got, reference_embeddings(batch), rtol=0, atol=1e-5)
    # Distinct inputs, distinct embeddings: no two rows anywhere near each other.
    gaps = np.linalg.norm(got[:, None] - got[None], axis=-1)[~np.eye(7, dtype=bool)]
    assert gaps.min() > 0.1


def test_a_mirrored_image_embeds_the_same(embedder: OnnxEmbedder) -> None:
    batch = np.random.default_rng(4).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    mirrored = np.ascontiguousarray(batch[..., ::-1])
    np.testing.assert_allclose(embedder.embed(mirrored), embedder.embed(batch), atol=1e-5)


def test_two_builds_are_byte_identical(tmp_path: Path, tiny_model_path: Path) -> None:
    again = write_tiny_artifact(tmp_path)
    assert again.read_bytes() == tiny_model_path.read_bytes()
    assert (tmp_path / "embedder.json").read_bytes() == tiny_model_path.with_suffix(
        ".json"
    ).read_bytes()
