"""The serving model's session and a migration target's get the same options: with batching,
neither session's intra-op threads spin between calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.model_migration import load_target, new_record
from app.retriever import model_identity
from app.serving_session import load_embedder
from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder
from tests.tiny_artifact import tiny_spec, write_tiny_artifact

SPINNING = "session.intra_op.allow_spinning"


def spinning(embedder: OnnxEmbedder) -> str | None:
    options = embedder._session.get_session_options()
    try:
        return str(options.get_session_config_entry(SPINNING))
    except RuntimeError:  # "does not have configuration": ORT's default, spinning
        return None


@pytest.mark.parametrize(("batching", "expected"), [(True, "0"), (False, None)])
def test_a_migration_target_runs_like_the_serving_model(
    tmp_path: Path, tiny_model_path: Path, batching: bool, expected: str | None
) -> None:
    settings = Settings(
        model_path=tiny_model_path, allow_gpu=False, batching=batching, data_dir=tmp_path
    )
    serving = load_embedder(settings)
    target_path = write_tiny_artifact(tmp_path / "new", tiny_spec("2"), 1)
    target = OnnxEmbedder(target_path, allow_gpu=False)
    record = new_record(model_identity(serving), model_identity(target), target_path)
    migrating = load_target(record, settings)
    assert migrating.path == target_path and serving.path == tiny_model_path
    assert spinning(serving) == spinning(migrating) == expected
