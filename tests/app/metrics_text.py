"""Read values out of a live service's /metrics (the Prometheus text format, parsed for real)."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metric_value(client: httpx.Client, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` in ``client``'s /metrics; 0 if absent."""
    r = client.get("/metrics")
    assert r.status_code == 200
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def wait_for_metric(
    client: httpx.Client, name: str, expected: float, timeout: float = 2.0, **labels: str
) -> float:
    """``name``'s value once it equals ``expected``, or its last value after ``timeout``.

    A request is counted just after its answer is sent, so the next scrape may race it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = metric_value(client, name, **labels)
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
