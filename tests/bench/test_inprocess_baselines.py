"""The in-process baselines on a real (tiny) ONNX model and real photos: counts add up, the
ORT thread count is the one asked for, and decoding costs what it must."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact.image_decode import preprocess_bytes
from artifact.onnx_embedder import OnnxEmbedder
from bench.inprocess_pipeline import measure_pipeline
from bench.large_photos import build_large_photo_set
from bench.raw_ort import measure_raw_ort, timed_calls
from bench.single_image_latency import measure_single_image

LIMIT = 40_000_000


@pytest.fixture(scope="module")
def bodies() -> list[bytes]:
    return build_large_photo_set(1, megapixels=0.2).all_views()


def test_timed_calls_runs_until_both_time_and_count() -> None:
    calls: list[int] = []
    n, elapsed = timed_calls(lambda: calls.append(1), seconds=0.05, min_calls=3)
    assert n == len(calls) >= 3 and elapsed >= 0.05
    n, _ = timed_calls(lambda: None, seconds=0.0, min_calls=7)
    assert n == 7


def test_raw_ort_every_size_with_consistent_rate(
    tiny_model_path: Path, bodies: list[bytes]
) -> None:
    embedder = OnnxEmbedder(tiny_model_path, intra_op_threads=1, max_batch=8)
    arrays = [preprocess_bytes(b, embedder.spec) for b in bodies]
    results = measure_raw_ort(embedder, arrays, batch_sizes=(1, 8), seconds_per_size=0.05)
    assert [r.batch_size for r in results] == [1, 8]
    for r in results:
        assert r.calls >= 3 and r.seconds >= 0.05
        assert r.images_per_s == r.batch_size * r.calls / r.seconds
        # One ORT thread: at most one core busy for the window (plus clock-tick slack).
        assert 0 < r.cpu_s <= r.seconds + 0.02
        assert r.core_ms_per_image == 1000 * r.cpu_s / (r.batch_size * r.calls)
    with pytest.raises(ValueError, match="splits batches"):
        measure_raw_ort(embedder, arrays, batch_sizes=(16,), seconds_per_size=0.01)


def test_pipeline_counts_full_batches_and_decoding_bounds_its_rate(
    tiny_model_path: Path, bodies: list[bytes]
) -> None:
    embedder = OnnxEmbedder(tiny_model_path, max_batch=32)
    arrays = [preprocess_bytes(b, embedder.spec) for b in bodies]
    (raw,) = measure_raw_ort(embedder, arrays, batch_sizes=(4,), seconds_per_size=0.2)
    result = measure_pipeline(
        embedder, bodies, batch_size=4, decode_threads=2, seconds=0.3, max_pixels=LIMIT
    )
    assert (result.batch_size, result.decode_threads) == (4, 2)
    assert result.batches >= 3 and result.seconds >= 0.3
    assert result.images_per_s == 4 * result.batches / result.seconds
    # The tiny model embeds ~1e5 images/s; decoding 0.2 MP JPEGs cannot keep up with it.
    assert result.images_per_s < raw.images_per_s / 5


def test_pipeline_refuses_a_bad_pool_and_propagates_a_decode_error(
    tiny_model_path: Path, bodies: list[bytes]
) -> None:
    embedder = OnnxEmbedder(tiny_model_path)
    with pytest.raises(ValueError):
        measure_pipeline(
            embedder, bodies, batch_size=0, decode_threads=1, seconds=0.1, max_pixels=LIMIT
        )
    # A pixel limit below the photos' size: the decode error reaches the caller.
    with pytest.raises(ValueError, match="pixels"):
        measure_pipeline(
            embedder, bodies, batch_size=2, decode_threads=1, seconds=0.1, max_pixels=1000
        )


def test_single_image_parts_and_total(tiny_model_path: Path, bodies: list[bytes]) -> None:
    embedder = OnnxEmbedder(tiny_model_path)
    result = measure_single_image(embedder, bodies, seconds=0.2, max_pixels=LIMIT)
    assert result.images >= 5
    # Per image, decode + inference >= each of them, so the same holds for every percentile.
    assert result.total_p50_ms >= max(result.decode_p50_ms, result.inference_p50_ms)
    assert 0 < result.inference_p50_ms < result.decode_p50_ms  # tiny model, 0.2 MP JPEG
    # Decoding is single-threaded: its thread's CPU time is at most its wall time.
    assert 0 < result.decode_cpu_p50_ms <= result.decode_p50_ms + 0.5
