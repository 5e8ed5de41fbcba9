"""Reading the artifact contract: JSON types are checked strictly, never coerced."""

from __future__ import annotations

import dataclasses
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
        ("jpeg_draft_min_ratio", "2.0", "jpeg_draft_min_ratio must be a finite JSON number"),
        ("jpeg_draft_min_ratio", True, "jpeg_draft_min_ratio must be a finite JSON number"),
        ("jpeg_draft_min_ratio", [2.0], "jpeg_draft_min_ratio must be a finite JSON number"),
        ("jpeg_draft_min_ratio", {"ratio": 2}, "jpeg_draft_min_ratio must be a finite JSON"),
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


def test_a_contract_without_the_jpeg_draft_field_loads_with_it_off() -> None:
    """Models exported before the field existed keep decoding every image in full."""
    old = contract()
    del old["jpeg_draft_min_ratio"]
    spec = PreprocessSpec.from_json(json.dumps(old))
    assert spec.jpeg_draft_min_ratio is None and spec == SPEC


@pytest.mark.parametrize(("written", "read"), [(None, None), (2.0, 2.0), (3, 3.0), (4.5, 4.5)])
def test_jpeg_draft_ratio_round_trips(written: float | None, read: float | None) -> None:
    spec = PreprocessSpec.from_json(json.dumps(contract(jpeg_draft_min_ratio=written)))
    assert spec.jpeg_draft_min_ratio == read
    assert type(spec.jpeg_draft_min_ratio) is type(read)  # 3 is read as 3.0, one representation
    assert PreprocessSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("ratio", [1.999, 1.0, 0.5, 0.0, -2.0])
def test_jpeg_draft_ratio_below_two_is_refused(ratio: float) -> None:
    # Below 2 the DCT-scaled decode could be smaller than the model input.
    with pytest.raises(ContractError, match=r"jpeg_draft_min_ratio -?\d.* is below 2"):
        PreprocessSpec.from_json(json.dumps(contract(jpeg_draft_min_ratio=ratio)))
    with pytest.raises(ContractError, match="is below 2"):
        dataclasses.replace(SPEC, jpeg_draft_min_ratio=ratio)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_jpeg_draft_ratio_must_be_finite(text: str) -> None:
    # Python's json module reads these non-JSON words; the contract must not.
    raw = json.dumps(contract(jpeg_draft_min_ratio=2.0)).replace(
        '"jpeg_draft_min_ratio": 2.0', f'"jpeg_draft_min_ratio": {text}'
    )
    assert text in raw
    with pytest.raises(ContractError, match="jpeg_draft_min_ratio must be a finite JSON number"):
        PreprocessSpec.from_json(raw)


def test_a_wrong_ratio_type_is_refused_when_built_in_code_too() -> None:
    with pytest.raises(ContractError, match="jpeg_draft_min_ratio must be a finite JSON number"):
        dataclasses.replace(SPEC, jpeg_draft_min_ratio="2")  # type: ignore[arg-type]
