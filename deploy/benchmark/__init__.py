"""Pieces of ``deploy/bench.py``: raw ONNX Runtime throughput, the service process, its store,
metrics."""

from deploy.benchmark.ort_throughput import BatchThroughput, measure_ort_throughput
from deploy.benchmark.redis_namespace import (
    ThrowawayNamespace,
    check_redis,
    drop_namespace,
    redact_url,
    throwaway_namespace,
)
from deploy.benchmark.service_process import free_port, service_process
from deploy.benchmark.stage_metrics import StageTime, histogram_totals, window_times

__all__ = [
    "BatchThroughput",
    "StageTime",
    "ThrowawayNamespace",
    "check_redis",
    "drop_namespace",
    "free_port",
    "histogram_totals",
    "measure_ort_throughput",
    "redact_url",
    "service_process",
    "throwaway_namespace",
    "window_times",
]
