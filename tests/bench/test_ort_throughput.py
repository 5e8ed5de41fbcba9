"""Raw ORT throughput on the real default model: counts add up and batches really run."""

from __future__ import annotations

from pathlib import Path

from bench.loadtest.photo_set import build_photo_set
from bench.ort_throughput import measure_ort_throughput


def test_every_batch_size_measured_with_consistent_rate(default_model_path: Path) -> None:
    photos = build_photo_set(views_per_photo=1).all_views()
    results = measure_ort_throughput(
        default_model_path, photos, batch_sizes=(1, 4), seconds_per_size=0.2, min_calls=2
    )
    assert [r.batch_size for r in results] == [1, 4]
    for r in results:
        assert r.calls >= 2 and r.seconds >= 0.2
        assert r.images_per_s == r.batch_size * r.calls / r.seconds
        # A CPU embedding of a 224-ish image takes well over 1 ms and finishes within seconds.
        assert 0.1 < r.images_per_s < 5000
