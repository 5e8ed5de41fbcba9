"""bench.answer_folders' embedding cache: a second run reads what the first embedded, and a
changed recipe or model is not served a stale file."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from artifact.onnx_embedder import OnnxEmbedder
from bench.answer_folders import FolderRecipe, build_folder, cache_file, cached_folder, model_digest


def test_the_cache_gives_back_the_folder_it_stored(tiny_model_path: Path, tmp_path: Path) -> None:
    embedder = OnnxEmbedder(tiny_model_path, allow_gpu=False, allow_spinning=False)
    recipe = FolderRecipe("q", (2, 2), gallery_views=2, query_views=2, seed=3,
                          photos=("coffee",))  # fmt: skip
    digest = model_digest(embedder)
    built = cached_folder(embedder, recipe, tmp_path, digest)
    path = cache_file(tmp_path, digest, recipe)
    assert path.exists() and list(tmp_path.iterdir()) == [path]  # no temporary file left
    # Read back without a model at all: the file is the whole folder.
    read = cached_folder(None, recipe, tmp_path, digest)  # type: ignore[arg-type]
    fresh = build_folder(embedder, recipe)
    for f in fields(built):
        a, b, c = (getattr(x, f.name) for x in (built, read, fresh))
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b) and np.array_equal(a, c), f.name
        else:
            assert a == b == c, f.name
    assert cache_file(tmp_path, digest, replace(recipe, seed=4)) != path
    assert cache_file(tmp_path, "another-model", recipe) != path
