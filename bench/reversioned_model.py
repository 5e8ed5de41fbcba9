"""A model file's twin under another model version: the same graph and weights, its contract's
``model_version`` changed. A migration needs a target whose identity differs from the serving
model's; this one costs a file copy instead of a training or export run, and embeds exactly as
the original does (so its speed is the original's)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx

from artifact.preprocess_spec import CONTRACT_KEY, PreprocessSpec


def write_reversioned(model: Path, out_dir: Path, suffix: str = "-bench") -> Path:
    """Write ``out_dir/embedder.onnx`` (and its ``embedder.json``): ``model`` with
    ``model_version`` + ``suffix``. Returns the ONNX path."""
    proto = onnx.load(str(model))
    entries = {p.key: p for p in proto.metadata_props}
    if CONTRACT_KEY not in entries:
        raise ValueError(f"{model} carries no contract (metadata key {CONTRACT_KEY!r})")
    spec = PreprocessSpec.from_json(entries[CONTRACT_KEY].value)
    twin = replace(spec, model_version=spec.model_version + suffix)
    entries[CONTRACT_KEY].value = twin.to_json()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "embedder.onnx"
    # The default model keeps its weights in the file itself (no external data to follow).
    onnx.save(proto, str(path))
    (out_dir / "embedder.json").write_text(twin.to_json() + "\n")
    return path
