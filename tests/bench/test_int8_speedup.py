"""bench.int8_speedup on the tiny torch-free artifact and its INT8 twin: every printed figure is
what it says, checked against oracles computed here (brute-force cosines and centroid Recall@1)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from bench.int8_speedup import main, run
from bench.loadtest.photo_set import build_photo_set
from model.data.sample_photos import write_gallery_query_folder
from model.exporter.calibration_reader import CalibrationBatches
from model.exporter.int8_exporter import int8_spec
from model.exporter.int8_quantizer import quantize_int8
from tests.tiny_artifact import TINY_SPEC, build_tiny_model, write_tiny_artifact

ITEMS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
FAST = ["--seconds", "0.05", "--rounds", "1", "--batch-sizes", "1", "4"]


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("fp32"))


@pytest.fixture(scope="module")
def int8_path(fp32_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny artifact quantised, with the INT8 contract (as the exporter writes it)."""
    import onnx

    from artifact.preprocess_spec import CONTRACT_KEY

    calibration = stack_batch(
        [preprocess_bytes(v, TINY_SPEC) for v in build_photo_set(views_per_photo=2).all_views()]
    )
    path = tmp_path_factory.mktemp("int8") / "embedder-int8.onnx"
    quantize_int8(fp32_path, path, CalibrationBatches(TINY_SPEC.input_name, calibration))
    model = onnx.load(str(path))
    (entry,) = (p for p in model.metadata_props if p.key == CONTRACT_KEY)
    entry.value = json.dumps(int8_spec(TINY_SPEC).to_dict(), sort_keys=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    write_gallery_query_folder(root, ITEMS, gallery_views=2, query_views=1)
    return root


def brute_force_recall_at_1(model_path: Path, root: Path) -> float:
    """Each item's centroid = normalised mean of its gallery embeddings; hit = best cosine."""
    embedder = OnnxEmbedder(model_path, allow_gpu=False)

    def embed(paths: list[Path]) -> np.ndarray:
        batch = stack_batch([preprocess_bytes(p.read_bytes(), embedder.spec) for p in paths])
        return embedder.embed(batch).astype(np.float64)

    items = sorted(p.name for p in (root / "gallery").iterdir())
    centroids = np.stack([embed(sorted((root / "gallery" / i).iterdir())).mean(0) for i in items])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    hits = []
    for item in items:
        for q in embed(sorted((root / "query" / item).iterdir())):
            hits.append(items[int(np.argmax(centroids @ (q / np.linalg.norm(q))))] == item)
    return float(np.mean(hits))


def test_figures_match_oracles(fp32_path: Path, int8_path: Path, folder: Path) -> None:
    result = run(fp32_path, int8_path, folder=folder, batch_sizes=(1, 4), seconds=0.05, rounds=1)

    assert [r.batch_size for r in result.rates] == [1, 4]
    for r in result.rates:
        assert r.fp32 > 0 and r.int8 > 0 and r.speedup == r.int8 / r.fp32
    assert result.best_speedup == max(r.int8 for r in result.rates) / max(
        r.fp32 for r in result.rates
    )
    # Core time at the first and the largest size; a 32×32 pooled projection costs well under
    # a millisecond of CPU per image.
    assert [c.batch_size for c in result.core] == [1, 4]
    for c in result.core:
        assert 0 < c.fp32_ms < 50 and 0 < c.int8_ms < 50 and c.speedup == c.fp32_ms / c.int8_ms
    # Cosines of the INT8 embeddings (one batch, and one by one) to FP32's, on the bench photos
    # (ORT's kernels are not bit-identical run to run: 1e-6 of slack).
    photos = build_photo_set().all_views()
    batch = stack_batch([preprocess_bytes(p, TINY_SPEC) for p in photos])
    ref = OnnxEmbedder(fp32_path, allow_gpu=False).embed(batch).astype(np.float64)
    int8 = OnnxEmbedder(int8_path, allow_gpu=False)
    runs = [int8.embed(batch), np.concatenate([int8.embed(batch[i : i + 1]) for i in range(32)])]
    cos = np.concatenate(
        [
            np.sum(ref * g, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(g, axis=1))
            for g in runs
        ]
    )
    assert result.photos.num_photos == len(photos) == 32
    assert result.photos.mean_cosine == pytest.approx(cos.mean(), abs=1e-6)
    assert result.photos.min_cosine == pytest.approx(cos.min(), abs=1e-6)
    assert 0.9 < result.photos.min_cosine < 1.0  # really quantised, still the same model

    assert result.fp32_recall.num_queries == len(ITEMS) == result.fp32_recall.num_items
    assert result.fp32_recall.recall_at_1 == brute_force_recall_at_1(fp32_path, folder)
    assert result.int8_recall.recall_at_1 == brute_force_recall_at_1(int8_path, folder)
    assert result.recall_change == (result.int8_recall.recall_at_1 - result.fp32_recall.recall_at_1)


def test_printed_table_says_what_was_measured(
    fp32_path: Path, int8_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--fp32", str(fp32_path), "--int8", str(int8_path), "--folder", str(folder), *FAST]
    assert main(argv) == 0
    out = capsys.readouterr().out
    one = re.search(r"batch 1: FP32 ([\d.]+), INT8 ([\d.]+) images/s, speed-up ([\d.]+)x", out)
    assert one, out
    fp32_rate, int8_rate, speedup = (float(g) for g in one.groups())
    assert speedup == pytest.approx(int8_rate / fp32_rate, abs=0.01 + 0.001 * speedup)
    best = re.search(r"best batch: FP32 [\d.]+ \(batch (1|4)\), INT8 [\d.]+ \(batch (1|4)\)", out)
    assert best, out
    core = re.findall(
        r"batch (1|4): FP32 ([\d.]+), INT8 ([\d.]+) core-ms/image, speed-up ([\d.]+)x", out
    )
    assert [c[0] for c in core] == ["1", "4"], out
    for _, fp32_ms, int8_ms, ratio in core:
        assert float(ratio) == pytest.approx(float(fp32_ms) / float(int8_ms), abs=0.02, rel=0.05)
    assert re.search(r"INT8 vs FP32 cosine on 32 photos: mean = 0\.9\d+, min = 0\.9\d+", out)
    assert re.search(r"Recall@1 on 6 queries / 6 items: FP32 [\d.]+, INT8 [\d.]+, change", out)


def test_a_model_against_itself_agrees_exactly(
    fp32_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--fp32", str(fp32_path), "--int8", str(fp32_path), "--folder", str(folder), *FAST]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cosine"]["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert report["recall_change"] == 0.0
    assert [r["batch_size"] for r in report["rates"]] == [1, 4]


def test_models_that_are_not_twins_are_refused(
    fp32_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = dataclasses.replace(TINY_SPEC, model_name="another-model")
    path = tmp_path / "other.onnx"
    path.write_bytes(build_tiny_model(other).SerializeToString())
    assert main(["--fp32", str(fp32_path), "--int8", str(path), *FAST]) == 1
    assert "not twins: their contracts differ in ['model_name']" in capsys.readouterr().err
