"""Why a load window's requests were turned away: the service's rejection counters, from two
scrapes of ``/metrics``.

A 503 seen by the load generator can come from the admission queue (full, or a request that
waited past the queue timeout), the store lane (full, past its deadline, its breaker open) or
the bytes-in-flight bound; the window's own status codes cannot tell which, the counters can.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

# counter family → the label that says why (None: the family is one reason)
REJECTION_COUNTERS: dict[str, str | None] = {
    "retrieval_admission_rejections": "reason",
    "retrieval_store_lane_rejections": None,
    "retrieval_store_deadline_exceeded": None,
    "retrieval_store_breaker_refusals": None,
    "retrieval_bytes_in_flight_rejections": None,
}


def shed_counts(text: str) -> dict[str, float]:
    """``{"<family>[:<reason>]": total}`` of the rejection counters in Prometheus text
    exposition ``text`` (families absent from it are left out)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in REJECTION_COUNTERS:
            continue
        label = REJECTION_COUNTERS[family.name]
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            key = family.name
            if label is not None and label in sample.labels:
                key = f"{key}:{sample.labels[label]}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def shed_between(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, int]:
    """The rejections counted between two scrapes, the reasons with none left out."""
    deltas = {k: round(v - before.get(k, 0.0)) for k, v in after.items()}
    return {k: n for k, n in sorted(deltas.items()) if n}


def describe(counts: Mapping[str, int]) -> str:
    if not counts:
        return "none turned away by the service"
    return ", ".join(f"{n} {key.removeprefix('retrieval_')}" for key, n in counts.items())
