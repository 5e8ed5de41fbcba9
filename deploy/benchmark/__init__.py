"""Pieces of ``deploy/bench.py``: raw ONNX Runtime throughput, the service process, metrics."""

from deploy.benchmark.ort_throughput import BatchThroughput, measure_ort_throughput
from deploy.benchmark.service_process import free_port, service_process
from deploy.benchmark.stage_metrics import StageTime, histogram_totals, window_times

__all__ = [
    "BatchThroughput",
    "StageTime",
    "free_port",
    "histogram_totals",
    "measure_ort_throughput",
    "service_process",
    "window_times",
]
