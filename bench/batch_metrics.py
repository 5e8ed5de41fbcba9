"""The dynamic batcher's and the admission queue's metrics over a window between two scrapes
of ``/metrics`` (names fixed by issue 10; a service without batching exports none of them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

BATCH_SIZE = "retrieval_batch_size"  # histogram: images per executed batch
QUEUE_WAIT = "retrieval_batch_queue_wait_seconds"  # histogram: per request
BATCH_INFERENCE = "retrieval_batch_inference_seconds"  # histogram: per batch
REJECTIONS = "retrieval_admission_rejections"  # counter (``_total``), label ``reason``
REJECTION_REASONS = ("queue_full", "queue_timeout", "client_gone")


def _scrape(text: str) -> dict[str, float]:
    """``{series: value}`` for the histograms' ``_sum``/``_count`` (summed over labels) and the
    rejection counter per ``reason`` (as ``"<counter>{reason}"``)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in (BATCH_SIZE, QUEUE_WAIT, BATCH_INFERENCE):
            for sample in family.samples:
                if sample.name in (f"{family.name}_sum", f"{family.name}_count"):
                    out[sample.name] = out.get(sample.name, 0.0) + sample.value
        elif family.name == REJECTIONS:
            for sample in family.samples:
                if sample.name == f"{REJECTIONS}_total":
                    key = f"{REJECTIONS}{{{sample.labels.get('reason', '')}}}"
                    out[key] = out.get(key, 0.0) + sample.value
    return out


@dataclass(frozen=True)
class BatchWindow:
    """``exported``: the service has the batching metrics at all (``False``: the released
    path, or a service from before issue 10); every figure is then 0."""

    exported: bool
    batches: int
    images: int
    batch_inference_s: float
    queue_waits: int
    queue_wait_s: float
    rejections: dict[str, int] = field(default_factory=dict)

    @property
    def mean_batch_size(self) -> float:
        return self.images / self.batches if self.batches else 0.0

    @property
    def mean_queue_wait_ms(self) -> float:
        return 1000 * self.queue_wait_s / self.queue_waits if self.queue_waits else 0.0

    @property
    def mean_batch_inference_ms(self) -> float:
        return 1000 * self.batch_inference_s / self.batches if self.batches else 0.0


def batch_window(before: str, after: str) -> BatchWindow:
    """What happened between two ``/metrics`` texts (``after`` minus ``before``)."""
    b, a = _scrape(before), _scrape(after)

    def delta(key: str) -> float:
        return a.get(key, 0.0) - b.get(key, 0.0)

    reasons = sorted(
        {k for k in a if k.startswith(REJECTIONS)}
        | {f"{REJECTIONS}{{{r}}}" for r in REJECTION_REASONS}
    )
    return BatchWindow(
        exported=f"{BATCH_SIZE}_count" in a,
        batches=round(delta(f"{BATCH_SIZE}_count")),
        images=round(delta(f"{BATCH_SIZE}_sum")),
        batch_inference_s=delta(f"{BATCH_INFERENCE}_sum"),
        queue_waits=round(delta(f"{QUEUE_WAIT}_count")),
        queue_wait_s=delta(f"{QUEUE_WAIT}_sum"),
        rejections={k[len(REJECTIONS) + 1 : -1]: round(delta(k)) for k in reasons},
    )
