"""Closed-loop soak runs with Locust, over the load test's photos (optional).

    .venv/bin/locust -f bench/loadtest/locustfile.py --host http://127.0.0.1:8000 \\
        --headless --users 8 --spawn-rate 2 --run-time 30m

Locust paces each simulated user by waiting for its previous answer (closed loop), so a slow
server also slows the senders and the tail latencies it reports are optimistic (coordinated
omission): use it to hold a steady load for a long time and watch memory, errors and the
service's ``/metrics``; take latency figures from ``python -m bench.loadtest`` (open loop).
A steady load admits every user: with more users than the service's
``RETRIEVAL_ADMISSION_QUEUE`` in flight at once, the extra requests get 503s (load shed, and
counted as failures here).

Users are 9 : 1 searchers and enrollers (the 90/10 mix). A small gallery of seed items is
enrolled when the run starts; every enroller task enrolls one view under a fresh item id and
deletes that item straight after, so a soak of any length leaves the service as it found it.
A service with API keys: ``CENTROID_RETRIEVAL_API_KEY=cr_...`` (read and write scopes) in the
environment is sent by every user and by the seeding and cleanup.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from locust import HttpUser, between, events, task

from bench.loadtest.photo_set import PHOTO_NAMES, build_photo_set
from client.api_key_header import api_key_headers

PHOTOS = build_photo_set(views_per_photo=4, seed=0)
VIEWS = PHOTOS.all_views()
SEED_PREFIX = "soak-seed:"
ENROLL_PREFIX = "soak:"
# Enrolled (or being enrolled) and not yet deleted. Locust kills users mid-task when the run
# ends, between an enrollment and its delete; the run's end sweeps these up.
_undeleted: set[str] = set()
# A killed enrollment may still commit on the server after the first sweep found nothing.
LATE_COMMIT_WAIT_S = 2.0


def _seed_gallery(environment: Any, **_: Any) -> None:
    # One item per source photo, enrolled with all but the last of its views.
    with httpx.Client(base_url=environment.host, timeout=60, headers=api_key_headers()) as client:
        for name in PHOTO_NAMES:
            views = PHOTOS.views[name][:-1]
            files = [("images", (f"{i}.jpg", v, "image/jpeg")) for i, v in enumerate(views)]
            client.post(f"/items/{SEED_PREFIX}{name}/images", files=files).raise_for_status()


def _drop_gallery(environment: Any, **_: Any) -> None:
    with httpx.Client(base_url=environment.host, timeout=60, headers=api_key_headers()) as client:
        for name in PHOTO_NAMES:
            client.delete(f"/items/{SEED_PREFIX}{name}")
        if _undeleted:
            for sweep in range(2):
                if sweep:
                    time.sleep(LATE_COMMIT_WAIT_S)
                for item in sorted(_undeleted):
                    client.delete(f"/items/{item}")
            _undeleted.clear()


events.test_start.add_listener(_seed_gallery)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_drop_gallery)  # type: ignore[no-untyped-call]


class _PhotoUser(HttpUser):
    """A user that sends the photo set's views in turn (each user from the start)."""

    abstract = True
    wait_time = between(0.0, 0.5)

    def on_start(self) -> None:
        self._sent = 0
        self.client.headers.update(api_key_headers())

    def next_view(self) -> bytes:
        view = VIEWS[self._sent % len(VIEWS)]
        self._sent += 1
        return view


class SearchUser(_PhotoUser):
    weight = 9

    @task
    def search(self) -> None:
        files = {"image": ("q.jpg", self.next_view(), "image/jpeg")}
        self.client.post("/search?k=10", files=files)


class EnrollUser(_PhotoUser):
    weight = 1

    @task
    def enroll_then_delete(self) -> None:
        item = f"{ENROLL_PREFIX}{uuid.uuid4().hex}"
        _undeleted.add(item)
        files = {"images": ("e.jpg", self.next_view(), "image/jpeg")}
        self.client.post(f"/items/{item}/images", files=files, name="/items/[id]/images")
        # Also after a failed or timed-out enrollment, which may still have committed; a 404
        # then only means it did not.
        with self.client.delete(
            f"/items/{item}", name="/items/[id]", catch_response=True
        ) as response:
            if response.status_code in (204, 404):
                response.success()
                _undeleted.discard(item)
