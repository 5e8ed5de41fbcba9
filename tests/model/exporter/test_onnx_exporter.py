"""What the exporter writes: the contract, JPEG draft field included, in the ONNX metadata and
in the readable copy beside it, read back by the service's loader."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import CONTRACT_KEY, PreprocessSpec
from model.exporter.jpeg_draft_option import with_jpeg_draft
from model.exporter.onnx_exporter import export_embedder
from model.exporter.parity_photos import load_parity_photos
from tests.model.exporter.test_parity_gate import SmallEmbedder, small_spec


@pytest.mark.parametrize("ratio", [None, 3.0])
def test_the_draft_field_is_written_into_both_copies(ratio: float | None, tmp_path: Path) -> None:
    spec = with_jpeg_draft(small_spec(), ratio)
    result = export_embedder(SmallEmbedder(), spec, tmp_path, load_parity_photos())
    metadata = {p.key: p.value for p in onnx.load(str(result.onnx_path)).metadata_props}
    inside = json.loads(metadata[CONTRACT_KEY])
    beside = json.loads(result.contract_path.read_text())
    # Written explicitly, null when off, so a reader never has to guess what absence meant.
    assert inside["jpeg_draft_min_ratio"] == beside["jpeg_draft_min_ratio"] == ratio
    assert "jpeg_draft_min_ratio" in inside and "jpeg_draft_min_ratio" in beside
    loaded = OnnxEmbedder(result.onnx_path, allow_gpu=False).spec
    assert loaded == PreprocessSpec.from_dict(beside) == result.spec
    assert loaded.jpeg_draft_min_ratio == ratio
