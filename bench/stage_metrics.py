"""Per-stage and per-request times from two scrapes of the service's ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

STAGE_METRIC = "retrieval_stage_seconds"
REQUEST_METRIC = "http_request_duration_seconds"

# key (label values joined) → (sum of seconds, count of observations)
HistogramTotals = dict[str, tuple[float, float]]


def histogram_totals(text: str, metric: str, label: str) -> HistogramTotals:
    """``_sum`` and ``_count`` of histogram ``metric`` per value of ``label``, from Prometheus
    text exposition ``text``. Series missing the label are skipped."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for sample in family.samples:
            key = sample.labels.get(label)
            if key is None:
                continue
            if sample.name == f"{metric}_sum":
                sums[key] = sums.get(key, 0.0) + sample.value
            elif sample.name == f"{metric}_count":
                counts[key] = counts.get(key, 0.0) + sample.value
    return {k: (sums.get(k, 0.0), counts.get(k, 0.0)) for k in sums.keys() | counts.keys()}


@dataclass(frozen=True)
class StageTime:
    """Over the window between two scrapes: ``calls`` observations, ``total_s`` seconds."""

    name: str
    calls: int
    total_s: float

    @property
    def mean_ms(self) -> float:
        return 1000 * self.total_s / self.calls if self.calls else 0.0


def window_times(before: HistogramTotals, after: HistogramTotals) -> list[StageTime]:
    """``after - before`` per key, sorted by key; keys without observations are kept (0)."""
    out = []
    for key in sorted(after):
        s0, c0 = before.get(key, (0.0, 0.0))
        s1, c1 = after[key]
        out.append(StageTime(key, round(c1 - c0), s1 - s0))
    return out
