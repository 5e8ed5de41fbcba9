"""A tiny real embedder artifact, built without torch, for tests where the model's quality adds
nothing.

It is what the exporter writes (``embedder.onnx`` carrying the contract in its metadata, and a
readable ``embedder.json`` beside it), so the service loads it through the same
:class:`~artifact.onnx_embedder.OnnxEmbedder` checks as the real model. The graph is
``uint8 (N, 3, 32, 32) → Cast → AveragePool 8×8 → Flatten (N, 48) → MatMul (48, 32)``: a 4×4 grid
of mean colours, times one fixed matrix. That matrix folds in three linear steps, so the graph
stays one MatMul while :func:`reference_embeddings` spells them out for tests to check against:

* each cell is averaged with its left-right mirror, so a flipped photo embeds exactly the same;
* the 48 values are centred on their mean: the brightness and contrast jitter of a photo's
  views then scales the vector (cosine ignores that) instead of shifting it;
* a seeded Gaussian projection to 32 dimensions mixes them.

That is enough for the test photos' views to find their own item among a few (the end-to-end
retrieval test still runs the real model), and in about a millisecond per batch.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from artifact.preprocess_spec import CONTRACT_KEY, PreprocessSpec

INPUT_SIDE = 32
GRID = 4
EMBEDDING_DIM = 32
SEED = 20261201
# ONNX Runtime loads opset 17 and IR version 8 in every release the service supports; the real
# exporter writes opset 17 as well.
OPSET = 17
IR_VERSION = 8

TINY_SPEC = PreprocessSpec(
    input_size=(INPUT_SIDE, INPUT_SIDE),
    embedding_dim=EMBEDDING_DIM,
    model_name="tiny-pooled-projection",
    model_version="1",
    output_normalized=False,
    # Fixed, so that two builds of the artifact are byte-identical.
    export_date="2026-12-01T00:00:00+00:00",
    source_checkpoint=f"tests/tiny_artifact.py (seed {SEED})",
    graph_normalization={"scale": [1 / 255]},
)

_CELL = INPUT_SIDE // GRID
_FEATURES = 3 * GRID * GRID


def _mirror_average() -> npt.NDArray[np.float64]:
    """``(48, 48)``: feature ``(c, row, col)`` → mean of it and ``(c, row, GRID-1-col)``."""
    flat = np.arange(_FEATURES).reshape(3, GRID, GRID)
    mirror = np.zeros((_FEATURES, _FEATURES))
    for a, b in zip(flat.ravel(), flat[:, :, ::-1].ravel(), strict=True):
        mirror[a, a] += 0.5
        mirror[b, a] += 0.5
    return mirror


def tiny_spec(model_version: str) -> PreprocessSpec:
    """``TINY_SPEC`` under another model version: the identity of a second tiny model (built
    with another ``seed``), for tests of a model change."""
    return replace(TINY_SPEC, model_version=model_version)


def _projection(seed: int = SEED) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).standard_normal((_FEATURES, EMBEDDING_DIM))


def _folded_matrix(seed: int = SEED) -> npt.NDArray[np.float32]:
    centring = np.eye(_FEATURES) - np.full((_FEATURES, _FEATURES), 1 / _FEATURES)
    folded: npt.NDArray[np.float32] = (
        _mirror_average() @ centring @ _projection(seed) / 255
    ).astype(np.float32)
    return folded


def reference_embeddings(batch: npt.NDArray[np.uint8], seed: int = SEED) -> npt.NDArray[np.float64]:
    """What the graph computes, step by step in ``float64``: ``(N, 3, 32, 32)`` → ``(N, 32)``."""
    n = batch.shape[0]
    pixels = batch.astype(np.float64) / 255
    cells = pixels.reshape(n, 3, GRID, _CELL, GRID, _CELL).mean(axis=(3, 5))
    symmetric = (cells + cells[:, :, :, ::-1]) / 2
    features = symmetric.reshape(n, _FEATURES)
    centred = features - features.mean(axis=1, keepdims=True)
    embeddings: npt.NDArray[np.float64] = centred @ _projection(seed)
    return embeddings


def build_tiny_model(spec: PreprocessSpec = TINY_SPEC, seed: int = SEED) -> onnx.ModelProto:
    """The graph with ``spec`` in its metadata, checked by ``onnx.checker``; ``seed`` draws its
    projection (another seed: another model of the same shape, e.g. ``tiny_spec("2")``)."""
    x = helper.make_tensor_value_info(
        spec.input_name, TensorProto.UINT8, ["batch", 3, spec.height, spec.width]
    )
    y = helper.make_tensor_value_info(
        spec.output_name, TensorProto.FLOAT, ["batch", spec.embedding_dim]
    )
    weights = numpy_helper.from_array(_folded_matrix(seed), name="projection")
    nodes = [
        helper.make_node("Cast", [spec.input_name], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node(
            "AveragePool",
            ["pixels"],
            ["cells"],
            kernel_shape=[_CELL, _CELL],
            strides=[_CELL, _CELL],
        ),
        helper.make_node("Flatten", ["cells"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "projection"], [spec.output_name]),
    ]
    graph = helper.make_graph(nodes, "tiny_pooled_projection", [x], [y], initializer=[weights])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests.tiny_artifact"
    )
    model.ir_version = IR_VERSION
    entry = model.metadata_props.add()
    # Written as the real exporter writes it: the spec's dict as sorted JSON.
    entry.key, entry.value = CONTRACT_KEY, json.dumps(spec.to_dict(), sort_keys=True)
    onnx.checker.check_model(model)
    return model


def write_tiny_artifact(
    directory: Path, spec: PreprocessSpec = TINY_SPEC, seed: int = SEED
) -> Path:
    """Write ``directory/embedder.onnx`` and ``directory/embedder.json``; return the ONNX path."""
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / "embedder.onnx"
    (directory / "embedder.json").write_text(spec.to_json() + "\n")
    onnx.save(build_tiny_model(spec, seed), str(onnx_path))
    return onnx_path
