"""Open-loop load testing of the retrieval service (``python -m bench.loadtest``)."""

from bench.loadtest.arrival_schedule import constant_rate_schedule
from bench.loadtest.closed_loop import run_closed_loop
from bench.loadtest.item_ledger import CleanupReport, DeleteResult, ItemLedger
from bench.loadtest.latency_stats import EndpointStats, nearest_rank_percentile, summarize
from bench.loadtest.level_result import LevelResult
from bench.loadtest.open_loop import run_open_loop
from bench.loadtest.photo_set import PhotoSet, build_photo_set
from bench.loadtest.request_sample import Operation, RequestSample
from bench.loadtest.scenarios import EnrollScenario, MixScenario, SearchScenario

__all__ = [
    "CleanupReport",
    "DeleteResult",
    "EndpointStats",
    "EnrollScenario",
    "ItemLedger",
    "LevelResult",
    "MixScenario",
    "Operation",
    "PhotoSet",
    "RequestSample",
    "SearchScenario",
    "build_photo_set",
    "constant_rate_schedule",
    "nearest_rank_percentile",
    "run_closed_loop",
    "run_open_loop",
    "summarize",
]
