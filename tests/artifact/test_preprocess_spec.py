"""Reading the artifact contract: JSON types are checked strictly, never coerced."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import CONTRACT_KEY, ContractError, PreprocessSpec
from tests.artifact.test_onnx_embedder import SPEC, write_mean_rgb_model


def contract(**patch: object) -> dict[str, object]:
    return {**SPEC.to_dict(), **patch}


@pytest.mark.parametrize("value", [True, False])
def test_booleans_round_trip(value: bool) -> None:
    spec = PreprocessSpec.from_json(json.dumps(contract(output_normalized=value)))
    assert spec.output_normalized is value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # bool("false") is True: the bug this check exists for.
        ("output_normalized", "false", "output_normalized must be a JSON boolean"),
        ("output_normalized", "true", "output_normalized must be a JSON boolean"),
        ("output_normalized", 0, "output_normalized must be a JSON boolean"),
        ("output_normalized", None, "output_normalized must be a JSON boolean"),
        ("embedding_dim", "3", "embedding_dim must be a JSON integer"),
        ("embedding_dim", 3.0, "embedding_dim must be a JSON integer"),
        ("embedding_dim", True, "embedding_dim must be a JSON integer"),
        ("format_version", "1", "format_version must be a JSON integer"),
        ("input_size", ["4", 6], "input_size must be a JSON array of two integers"),
        ("input_size", [4], "input_size must be a JSON array of two integers"),
        ("input_size", [4, 6, 1], "input_size must be a JSON array of two integers"),
        ("input_size", "4x6", "input_size must be a JSON array of two integers"),
        ("value_range", [0, 255.0], "value_range must be a JSON array of two integers"),
        ("model_version", 1, "model_version must be a JSON string"),
        ("model_name", None, "model_name must be a JSON string"),
        ("input_name", ["images"], "input_name must be a JSON string"),
        ("graph_normalization", {"mean": ["0.5"]}, "graph_normalization must be a JSON object"),
        ("graph_normalization", [0.5], "graph_normalization must be a JSON object"),
    ],
)
def test_mistyped_fields_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ContractError, match=message) as caught:
        PreprocessSpec.from_json(json.dumps(contract(**{field: value})))
    assert json.dumps(value) in str(caught.value)  # says what it found


def test_the_default_models_contract_passes(default_model_path: Path) -> None:
    """Both copies of the real contract (in the ONNX file and beside it) satisfy the checks."""
    beside = PreprocessSpec.from_json(default_model_path.with_suffix(".json").read_text())
    metadata = {p.key: p.value for p in onnx.load(str(default_model_path)).metadata_props}
    inside = PreprocessSpec.from_metadata(metadata)
    assert inside == beside and inside.output_normalized is False
    assert inside.graph_normalization["mean"] == [0.5, 0.5, 0.5]


def test_a_model_with_a_string_boolean_is_refused_at_load(tmp_path: Path) -> None:
    path = write_mean_rgb_model(
        tmp_path / "m.onnx", {CONTRACT_KEY: json.dumps(contract(output_normalized="false"))}
    )
    with pytest.raises(ContractError, match="output_normalized must be a JSON boolean"):
        OnnxEmbedder(path)
