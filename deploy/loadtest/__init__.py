"""Open-loop load testing of the retrieval service (``python -m deploy.loadtest``)."""

from deploy.loadtest.arrival_schedule import constant_rate_schedule
from deploy.loadtest.closed_loop import run_closed_loop
from deploy.loadtest.item_ledger import CleanupReport, DeleteResult, ItemLedger
from deploy.loadtest.latency_stats import EndpointStats, nearest_rank_percentile, summarize
from deploy.loadtest.level_result import LevelResult
from deploy.loadtest.open_loop import run_open_loop
from deploy.loadtest.photo_set import PhotoSet, build_photo_set
from deploy.loadtest.request_sample import Operation, RequestSample
from deploy.loadtest.scenarios import EnrollScenario, MixScenario, SearchScenario

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
