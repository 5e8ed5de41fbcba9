"""OnnxEmbedder: loads any ONNX file carrying the contract, refuses others, picks providers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from artifact.onnx_embedder import CPU, CUDA, OnnxEmbedder, choose_providers
from artifact.preprocess_spec import CONTRACT_KEY, ContractError, PreprocessSpec

SPEC = PreprocessSpec(input_size=(4, 6), embedding_dim=3, model_name="mean-rgb", model_version="1")


def write_mean_rgb_model(path: Path, metadata: dict[str, str] | None, *, dim: int = 3) -> Path:
    """A tiny real ONNX graph: uint8 (N, 3, 4, 6) → per-channel mean (N, 3) as float32."""
    x = helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, 4, 6])
    y = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", dim])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    nodes = [
        helper.make_node("Cast", ["images"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["xf", "axes"], ["embeddings"], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "mean_rgb", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return path


def test_embeds_with_the_contract(tmp_path: Path) -> None:
    path = write_mean_rgb_model(tmp_path / "m.onnx", {CONTRACT_KEY: SPEC.to_json()})
    emb = OnnxEmbedder(path, max_batch=2)
    assert emb.spec == SPEC and emb.device == "cpu" and emb.active_providers[0] == CPU
    batch = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 6), dtype=np.uint8)
    out = emb.embed(batch)  # three chunks of at most 2
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out, batch.reshape(5, 3, -1).mean(axis=2), rtol=1e-6)


def test_refuses_a_model_without_contract(tmp_path: Path) -> None:
    path = write_mean_rgb_model(tmp_path / "m.onnx", None)
    with pytest.raises(ContractError, match="no preprocessing contract"):
        OnnxEmbedder(path)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"embedding_dim": 7}, "embedding_dim"),
        ({"input_size": [8, 8]}, "input shape"),
        ({"input_name": "pixels"}, "input 'pixels'"),
        ({"layout": "NHWC"}, "layout"),
        ({"format_version": 99}, "format_version"),
    ],
)
def test_refuses_a_contract_that_does_not_match(
    tmp_path: Path, patch: dict[str, object], message: str
) -> None:
    contract = {**SPEC.to_dict(), **patch}
    path = write_mean_rgb_model(tmp_path / "m.onnx", {CONTRACT_KEY: json.dumps(contract)})
    with pytest.raises(ContractError, match=message):
        OnnxEmbedder(path)


def test_refuses_garbage_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ContractError):
        OnnxEmbedder(bad)
    with pytest.raises(FileNotFoundError):
        OnnxEmbedder(tmp_path / "missing.onnx")


def test_provider_choice() -> None:
    assert choose_providers([CPU]) == [CPU]
    assert choose_providers([CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers([CUDA, CPU], allow_gpu=False) == [CPU]


def test_device_comes_from_the_active_providers(tmp_path: Path) -> None:
    """onnxruntime-gpu may list CUDA as available yet fail to use it: what counts is what the
    session actually runs. Here CUDA is requested (as if available) but cannot initialise."""
    path = write_mean_rgb_model(tmp_path / "m.onnx", {CONTRACT_KEY: SPEC.to_json()})
    emb = OnnxEmbedder(path, available_providers=[CUDA, CPU])
    assert emb.active_providers == [CPU] and emb.device == "cpu"


def test_spec_round_trips_and_validates() -> None:
    assert PreprocessSpec.from_json(SPEC.to_json()) == SPEC
    with pytest.raises(ContractError, match="missing"):
        PreprocessSpec.from_dict({"model_name": "x"})
    with pytest.raises(ContractError, match="not valid JSON"):
        PreprocessSpec.from_json("{")
