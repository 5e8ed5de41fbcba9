"""The per-search split of a window's core time, on hand-made figures: the parts add up to
the machine's time, and inference is costed at the window's mean batch size."""

from __future__ import annotations

import pytest

from bench.batch_metrics import BatchWindow
from bench.inprocess_pipeline import PipelineThroughput
from bench.loadtest.latency_stats import endpoint_stats
from bench.loadtest.request_sample import RequestSample
from bench.process_cpu import CpuWindow
from bench.raw_ort import MeasuredBatch
from bench.run_record import InProcessBaselines
from bench.search_breakdown import inference_core_ms, search_breakdown
from bench.service_window import ServiceWindow
from bench.single_image_latency import SingleImageLatency
from bench.stage_metrics import StageTime

# 100, 160 and 200 images/s at batch 1, 4, 16, taking 2.0, 2.0 and 8.0 CPU seconds: 20 ms of
# cores per image at batch 1, 12.5 at 4, 10 at 16.
RAW = [
    MeasuredBatch(1, 100, 1.0, 2.0),
    MeasuredBatch(4, 40, 1.0, 2.0),
    MeasuredBatch(16, 25, 2.0, 4.0),
]


def test_inference_core_time_interpolates_between_measured_batch_sizes() -> None:
    assert [b.core_ms_per_image for b in RAW] == pytest.approx([20.0, 12.5, 10.0])
    assert inference_core_ms(RAW, 1) == pytest.approx(20.0)
    assert inference_core_ms(RAW, 4) == pytest.approx(12.5)
    assert inference_core_ms(RAW, 2.5) == pytest.approx(20 + (12.5 - 20) * 1.5 / 3)
    assert inference_core_ms(RAW, 10) == pytest.approx(12.5 + (10 - 12.5) * 6 / 12)
    assert inference_core_ms(RAW, 0.5) == pytest.approx(20.0)  # clamped at the ends
    assert inference_core_ms(RAW, 64) == pytest.approx(10.0)


def test_parts_add_up_to_the_machine_and_the_rest_is_the_service_remainder() -> None:
    samples = [RequestSample("POST /search", i * 0.01, i * 0.01, 0.040, 200) for i in range(100)]
    cpu = CpuWindow(wall_s=2.0, client_s=0.1, service_s=2.6, busy_s=3.5, machine_s=4.0)
    window = ServiceWindow(
        samples=samples,
        stats=endpoint_stats("POST /search", samples, 2.0),
        cpu=cpu,
        stages={"decode": StageTime("decode", 100, 0.9)},
        request=StageTime("/search", 100, 3.8),
        batching=BatchWindow(True, 25, 100, 0.5, 100, 1.2),
    )
    inproc = InProcessBaselines(
        2, RAW, [], PipelineThroughput(4, 8, 10, 1.0), SingleImageLatency(50, 9.0, 10.0, 19.0, 7.0)
    )
    b = search_breakdown(window, inproc, ort_threads=2)
    assert b.mean_batch == 4.0 and b.searches == 100 and b.cores == pytest.approx(2.0)
    assert b.budget_ms == pytest.approx(40.0)  # 4 core-seconds / 100 searches
    assert b.core_ms == pytest.approx(
        {
            "client (bench process)": 1.0,
            "service: HTTP, multipart, index, rest": 26.0 - 7.0 - 12.5,
            "service: decode": 7.0,
            "service: inference": 12.5,
            "other processes": 8.0,  # 3.5 busy - 0.1 client - 2.6 service
            "idle": 5.0,
        }
    )
    assert sum(b.core_ms.values()) == pytest.approx(b.budget_ms)
    assert b.wall_ms == pytest.approx(
        {
            "decode": 9.0,
            "queued for inference": 12.0,
            "batch inference": 20.0,
            "in the service": 38.0,
            "at the client": 40.0,
        }
    )
