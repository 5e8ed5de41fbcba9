"""The bench's measurements against one running service over HTTP: seed a gallery, then closed-
loop search windows, an enrollment window and open-loop steps, each sent by the lean client
(pre-built bodies, this one process) and measured as a ``ServiceWindow``.

httpx serves only what is not measured: ``/info``, ``/metrics``, seeding and cleanup.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import httpx

from bench.lean_client import FilePart, LeanClient, multipart_body, prepare
from bench.loadtest.arrival_schedule import constant_rate_schedule
from bench.loadtest.closed_loop import run_closed_loop
from bench.loadtest.item_ledger import ItemLedger
from bench.loadtest.open_loop import run_open_loop
from bench.loadtest.photo_set import PhotoSet
from bench.loadtest.request_sample import Operation
from bench.loadtest.scenarios import ENROLL_ENDPOINT, SEARCH_ENDPOINT
from bench.loadtest.seed_gallery import SeedGallery
from bench.open_loop_step import open_loop_step
from bench.run_record import OpenLoopRun
from bench.service_window import ServiceWindow, measure_window

SEARCH_ROUTE = "/search"
ENROLL_ROUTE = "/items/{item_id}/images"
SEARCH_K = 10
# Distinct enrollment bodies cycled through (each request still enrolls under a new item id).
_ENROLL_BODIES = 4
# Pause after an open-loop step, so its backlog cannot spill into the next window.
_SETTLE_S = 1.0


@dataclass(frozen=True)
class SessionPlan:
    """How long and how hard each window runs (the command line's flags)."""

    warmup_s: float
    search_s: float
    single_s: float
    enroll_s: float
    enroll_clients: int
    enroll_images: int
    open_loop_s: float
    max_in_flight: int
    gallery_copies: int


class ServiceSession:
    """``client``: httpx on the service's URL (unmeasured calls); ``lean``: the measured
    requests; ``service_pid``: the service process, for its CPU time."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        lean: LeanClient,
        service_pid: int,
        photos: PhotoSet,
        plan: SessionPlan,
    ) -> None:
        self.client = client
        self.lean = lean
        self.pid = service_pid
        self.photos = photos
        self.plan = plan
        bodies = photos.all_views()
        self._searches = [
            lean.operation(
                prepare(
                    SEARCH_ENDPOINT,
                    "POST",
                    f"{SEARCH_ROUTE}?k={SEARCH_K}",
                    lean.authority,
                    multipart_body([FilePart("image", "query.jpg", "image/jpeg", body)]),
                )
            )
            for body in bodies
        ]
        n = plan.enroll_images
        self._enroll_bodies = [
            multipart_body(
                [
                    FilePart("images", f"{j}.jpg", "image/jpeg", bodies[(start + j) % len(bodies)])
                    for j in range(n)
                ]
            )
            for start in range(0, n * _ENROLL_BODIES, n)
        ]
        # The enrollments' items, deleted after their window; the gallery's stay until close.
        self.ledger = ItemLedger()
        self._gallery = SeedGallery(
            photos, id_prefix=f"bench-{uuid.uuid4().hex[:6]}-", copies=plan.gallery_copies
        )

    def search_at(self, i: int) -> Operation[LeanClient]:
        return self._searches[i % len(self._searches)]

    def enroll_at(self, i: int) -> Operation[LeanClient]:
        item_id = f"bench-e-{uuid.uuid4().hex}"
        request = prepare(
            ENROLL_ENDPOINT,
            "POST",
            f"/items/{item_id}/images",
            self.lean.authority,
            self._enroll_bodies[i % len(self._enroll_bodies)],
        )

        async def send(lean: LeanClient) -> int:
            # Recorded before it leaves: one that times out may still commit.
            self.ledger.record(item_id)
            status = (await lean.send(request)).status
            self.ledger.answered(item_id)
            return status

        return Operation(ENROLL_ENDPOINT, send)

    async def seed(self) -> int:
        """Enroll the gallery (searching an empty index measures nothing); returns its items."""
        return await self._gallery.enroll(self.client)

    async def warm_up(self, users: int) -> None:
        """Unmeasured searches: thread pools, ORT arenas for the batch shapes, connections."""
        await run_closed_loop(self.lean, self.search_at, users=users, duration_s=self.plan.warmup_s)

    async def closed_search(self, users: int, seconds: float) -> ServiceWindow:
        return await measure_window(
            self.client,
            self.pid,
            SEARCH_ROUTE,
            lambda: run_closed_loop(self.lean, self.search_at, users=users, duration_s=seconds),
            endpoint=SEARCH_ENDPOINT,
        )

    async def enrollment(self) -> ServiceWindow:
        """Closed-loop enrollments, each of ``enroll_images`` images to a new item; the items
        are deleted afterwards (outside the window)."""
        plan = self.plan
        window = await measure_window(
            self.client,
            self.pid,
            ENROLL_ROUTE,
            lambda: run_closed_loop(
                self.lean, self.enroll_at, users=plan.enroll_clients, duration_s=plan.enroll_s
            ),
            endpoint=ENROLL_ENDPOINT,
        )
        await self.ledger.sweep(self.client, grace_s=0.0)
        return window

    async def open_step(self, rate: float) -> OpenLoopRun:
        """Searches at a constant ``rate`` for ``open_loop_s`` (latency from schedule)."""
        schedule = constant_rate_schedule(rate, self.plan.open_loop_s)
        improper0 = self.lean.tally.improper_503
        window = await measure_window(
            self.client,
            self.pid,
            SEARCH_ROUTE,
            lambda: run_open_loop(
                self.lean, self.search_at, schedule, max_in_flight=self.plan.max_in_flight
            ),
            endpoint=SEARCH_ENDPOINT,
        )
        step = open_loop_step(
            window.samples,
            requested_rps=rate,
            duration_s=self.plan.open_loop_s,
            improper_503=self.lean.tally.improper_503 - improper0,
        )
        await asyncio.sleep(_SETTLE_S)
        return OpenLoopRun(step, window)

    async def close(self) -> None:
        """Delete everything the session enrolled (the store is thrown away anyway, but the
        service is left as found) and close the lean client's connections."""
        await self.lean.aclose()
        await self.ledger.sweep(self.client, grace_s=0.0)
        await self._gallery.ledger.sweep(self.client, grace_s=0.0)
