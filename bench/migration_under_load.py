"""Issue 13's migration target in one run: a model migration inside the service while the 90/10
load goes on, judged against the same load without it.

    python -m bench.migration_under_load [--images 10000] [--model M] [--new-model M2]
        [--views-per-item 5] [--clients 8] [--saturation-s 10] [--window-s 30] [--load 0.5]
        [--env RETRIEVAL_X=V ...]

1. The service (``python -m app.server``, SQLite under a temporary directory) enrolls
   ``--images`` real-photo views, ``--views-per-item`` per item: random views (crop, flip,
   colour, tilt) of the photos scikit-image and scikit-learn ship, every one distinct.
2. The 90/10 search/enroll mix (``bench/loadtest``'s scenarios) runs closed-loop with
   ``--clients`` clients: its answers per second are the saturation rate.
3. The same mix runs open-loop at ``--load`` (50 %) of that rate for ``--window-s`` seconds:
   the searches' p99 and failures without migration. The store is then copied (SQLite's
   backup API, and the blob directory): the reference service starts from that copy later.
4. The migration is recorded as ``centroid-retrieval migrate --model`` records it (the model
   installed, the record written), and ``POST /admin/migration?action=reembed`` re-embeds in
   the service, at ``RETRIEVAL_REEMBED_SHARE`` of the new model's time, while the same open
   load runs until the re-embedding has finished; the load goes on during ``action=switch``.
   Every enrollment the service acknowledges is recorded with its image ids.
5. After the switch every acknowledged enrollment (seeded, and of every phase) must be served
   by the new model's store: ``GET /items/{id}`` holds its image ids.
6. ``action=rollback``; a reference service that never migrated starts on the copy of step 3
   and receives the same acknowledged enrollments of steps 4-5, in the order they were
   acknowledged. Compared byte for byte (as JSON text, image ids replaced by item and
   position, since the two services draw their own for the replayed writes): every page of
   ``GET /items``, ``GET /items/{id}`` of every item written during the migration and of a
   seeded sample (``--compare-items``), and ``--queries`` searches (``k=10``).

``--new-model`` defaults to ``--model`` under another model version (``bench/reversioned_model``:
the same weights, so the same cost per image). Printed: the targets side by side with PASS/MISS,
and what the run offered and measured. Exit status 1 when a target is missed. The bench's load
generator and both services share the machine's cores: run it on an otherwise idle machine for
figures to quote, and read the load average it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.model_migration import install_model, new_record, write_record
from app.retriever import model_identity
from app.settings import Settings
from app.store_choice import open_store
from artifact.onnx_embedder import OnnxEmbedder
from bench.loadtest.arrival_schedule import constant_rate_schedule
from bench.loadtest.closed_loop import run_closed_loop
from bench.loadtest.collector_paused import collector_paused
from bench.loadtest.latency_stats import nearest_rank_percentile
from bench.loadtest.open_loop import run_open_loop
from bench.loadtest.request_sample import RequestSample
from bench.loadtest.scenarios import (
    ENROLL_ENDPOINT,
    SEARCH_ENDPOINT,
    Acknowledged,
    EnrollScenario,
    MixScenario,
    SearchScenario,
)
from bench.reversioned_model import write_reversioned
from bench.service_flags import add_service_flags, service_flags
from bench.service_process import service_process
from bench.shed_counts import describe, shed_between, shed_counts
from model.data.sample_photos import load_photo, photo_names, random_view

TARGET_P99_RATIO = 1.5
MAX_SIDE = 320  # of each view: a phone photo after client-side downscaling, cheap to make
JPEG_QUALITY = 90
LOAD_PHOTOS = 64  # distinct views the load's enrollments send (each under a new item id)
SEARCH_K = 10
SEED_CONCURRENCY = 4
MAX_IN_FLIGHT = 64
CHUNK_S = 1.0  # the migration's load runs in windows this long, until the re-embed is done
POLL_S = 0.2
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Gallery:
    items: list[tuple[str, list[bytes]]]
    queries: list[bytes]
    load_photos: list[bytes]

    @property
    def images(self) -> int:
        return sum(len(v) for _, v in self.items)


def build_gallery(images: int, views_per_item: int, queries: int, seed: int = 0) -> Gallery:
    """``images`` distinct views in items of ``views_per_item`` (item ``i`` is a view set of
    shipped photo ``i mod 20``), and query and load views drawn apart from them."""
    rng = random.Random(seed)
    names = photo_names()
    photos = []
    for name in names:
        photo = load_photo(name)
        photo.thumbnail((MAX_SIDE, MAX_SIDE))
        photos.append(photo)

    def view(i: int) -> bytes:
        buf = io.BytesIO()
        random_view(photos[i % len(photos)], rng).save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()

    items = []
    for i in range(math.ceil(images / views_per_item)):
        n = min(views_per_item, images - i * views_per_item)
        items.append(
            (f"g{i // len(names):05d}-{names[i % len(names)]}", [view(i) for _ in range(n)])
        )
    return Gallery(items, [view(i) for i in range(queries)], [view(i) for i in range(LOAD_PHOTOS)])


async def enroll_gallery(client: httpx.AsyncClient, gallery: Gallery) -> None:
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one(item_id: str, views: list[bytes]) -> None:
        files = [("images", (f"{n}.jpg", v, "image/jpeg")) for n, v in enumerate(views)]
        async with gate:
            r = await client.post(f"/items/{item_id}/images", files=files)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"seeding {item_id}: {r.status_code} {r.text[:200]}")

    await asyncio.gather(*(one(i, v) for i, v in gallery.items))


def mix(gallery: Gallery, prefix: str) -> tuple[MixScenario, EnrollScenario]:
    enroll = EnrollScenario(gallery.load_photos, id_prefix=prefix)
    return MixScenario(SearchScenario(gallery.queries, k=SEARCH_K), enroll), enroll


@dataclass
class Phase:
    """One load window's samples (latency from the scheduled time) and acknowledged writes."""

    name: str
    offered_rps: float
    seconds: float = 0.0
    samples: list[RequestSample] = field(default_factory=list)
    acknowledged: list[Acknowledged] = field(default_factory=list)
    # With migration: the load's samples around the switch (the others: while re-embedding).
    switch_samples: list[RequestSample] = field(default_factory=list)

    def of(self, endpoint: str, part: str = "all") -> list[RequestSample]:
        samples = {
            "all": self.samples + self.switch_samples,
            "re-embedding": self.samples,
            "switch": self.switch_samples,
        }[part]
        return [s for s in samples if s.endpoint == endpoint]

    def p(self, q: float, part: str = "all") -> float:
        searches = self.of(SEARCH_ENDPOINT, part)
        ms = [1000 * s.latency_s for s in searches if s.latency_s is not None]
        return nearest_rank_percentile(ms, q) if ms else math.nan

    def rejected(self, part: str = "all") -> int:
        """Searches answered 503 (the admission queue shedding, or a queue timeout)."""
        return sum(s.status == 503 for s in self.of(SEARCH_ENDPOINT, part))

    def failed(self, endpoint: str, part: str = "all") -> list[str]:
        return [s.error or str(s.status) for s in self.of(endpoint, part) if not s.ok]


async def scrape_shed(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics")
    r.raise_for_status()
    return shed_counts(r.text)


async def open_loop(
    client: httpx.AsyncClient, scenario: MixScenario, rate: float, seconds: float
) -> list[RequestSample]:
    return await run_open_loop(
        client,
        scenario.operation,
        constant_rate_schedule(rate, seconds),
        max_in_flight=MAX_IN_FLIGHT,
    )


def record_migration(data_dir: Path, new_model: Path) -> None:
    """What ``centroid-retrieval migrate --model`` writes before it re-embeds: the model
    installed beside the store and the migration recorded in it."""
    settings = Settings(model_path=new_model, data_dir=data_dir, redis_url=None)
    store = open_store(settings)
    try:
        source = store.get_model_identity()
        if source is None:
            raise RuntimeError("the store holds no model identity")
        target = model_identity(OnnxEmbedder(new_model, allow_gpu=False))
        write_record(
            store, new_record(source, target, install_model(new_model, settings.model_install_dir))
        )
    finally:
        store.close()


def copy_store(data_dir: Path, into: Path) -> None:
    """A consistent copy of a served SQLite store (the backup API, taken while the service
    holds it) and its blobs."""
    into.mkdir(parents=True)
    with (
        sqlite3.connect(data_dir / "store.sqlite3") as src,
        sqlite3.connect(into / "store.sqlite3") as dst,
    ):
        src.backup(dst)
    shutil.copytree(data_dir / "blobs", into / "blobs")


async def migration_status(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/admin/migration")
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


async def wait_status(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = await migration_status(client)
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"migration status not reached within {timeout_s} s: {body}")
        await asyncio.sleep(POLL_S)


def _reembed_done(status: dict[str, Any]) -> bool:
    run = status.get("run")
    return status["state"] == "ready" and run is not None and not run["running"]


async def migrate_under_load(
    client: httpx.AsyncClient,
    gallery: Gallery,
    rate: float,
    *,
    switch_window_s: float,
    timeout_s: float,
) -> tuple[Phase, float, dict[str, Any]]:
    """Re-embed in the service, then switch, with the open load running throughout. Returns
    the phase, the re-embedding's seconds and the switch's answer."""
    scenario, enroll = mix(gallery, "mig-")
    phase = Phase("with migration", rate)
    r = await client.post("/admin/migration", params={"action": "reembed"})
    if r.status_code != 202:
        raise RuntimeError(f"reembed: {r.status_code} {r.text[:300]}")
    start = time.monotonic()
    finished: list[float] = []

    async def watch() -> None:
        while not _reembed_done(await migration_status(client)):
            if time.monotonic() - start > timeout_s:
                raise RuntimeError(f"the re-embedding did not finish within {timeout_s} s")
            await asyncio.sleep(POLL_S)
        finished.append(time.monotonic())

    async def switch() -> httpx.Response:
        await asyncio.sleep(switch_window_s / 4)  # the load is under way when it comes
        return await client.post("/admin/migration", params={"action": "switch"})

    # One pause of the generator's collector over the whole phase: between two chunks it would
    # run again.
    with collector_paused():
        watcher = asyncio.create_task(watch())
        while not watcher.done():
            phase.samples += await open_loop(client, scenario, rate, CHUNK_S)
        await watcher
        reembed_s = finished[0] - start
        switching = asyncio.create_task(switch())
        phase.switch_samples = await open_loop(client, scenario, rate, switch_window_s)
        switched = await switching
    if switched.status_code != 200:
        raise RuntimeError(f"switch: {switched.status_code} {switched.text[:300]}")
    phase.seconds = time.monotonic() - start
    phase.acknowledged = list(enroll.acknowledged)
    body: dict[str, Any] = switched.json()
    return phase, reembed_s, body


async def lost_enrollments(
    client: httpx.AsyncClient, gallery: Gallery, acknowledged: Sequence[Acknowledged]
) -> list[str]:
    """Acknowledged writes the serving store does not hold: seeded items whose image count is
    short, load enrollments whose image ids are not all in their item."""
    counts = {s["item_id"]: s["image_count"] for s in await list_items(client)}
    lost = [i for i, views in gallery.items if counts.get(i, 0) < len(views)]
    gate = asyncio.Semaphore(8)

    async def check(ack: Acknowledged) -> str | None:
        async with gate:
            r = await client.get(f"/items/{ack.item_id}")
        if r.status_code != 200 or not set(ack.image_ids) <= set(r.json()["image_ids"]):
            return ack.item_id
        return None

    return lost + [i for i in await asyncio.gather(*map(check, acknowledged)) if i]


async def list_items(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/items", params=params)
        r.raise_for_status()
        page = r.json()
        out += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


async def answers(
    client: httpx.AsyncClient, item_ids: Sequence[str], queries: Sequence[bytes]
) -> dict[str, str]:
    """JSON text of the listing, of each of ``item_ids`` and of each query's search, with
    every image id replaced by ``<item>#<position>``. Searches one at a time: a burst of them
    would meet the admission queue's limit (503), which is not what is compared."""
    gate = asyncio.Semaphore(8)

    async def get(path: str) -> Any:
        async with gate:
            r = await client.get(path)
        if r.status_code == 404:  # an item this service lacks: compared as such
            return None
        r.raise_for_status()
        return r.json()

    async def search(query: bytes) -> Any:
        r = await client.post(
            "/search", params={"k": SEARCH_K}, files={"image": ("q.jpg", query, "image/jpeg")}
        )
        if r.status_code != 200:
            raise RuntimeError(f"search: {r.status_code} {r.text[:300]}")
        return r.json()

    items = await asyncio.gather(*(get(f"/items/{i}") for i in item_ids))
    hits = [await search(q) for q in queries]
    labels: dict[str, str] = {}
    for item in filter(None, items):
        for n, image_id in enumerate(item["image_ids"]):
            labels[image_id] = f"{item['item_id']}#{n}"
    # A search's best image may be of an item outside the compared ones: labelled the same way.
    for hit in (h for result in hits for h in result["results"]):
        image_id = hit.get("best_image_id")
        if image_id and image_id not in labels:
            item = await get(f"/items/{hit['item_id']}")
            assert item is not None, f"{hit['item_id']} is found but has no item"
            labels[image_id] = f"{item['item_id']}#{item['image_ids'].index(image_id)}"

    def text(value: Any) -> str:
        # One pass over the JSON's strings (a replace per image id is quadratic at 10^4).
        return _JSON_STRING.sub(
            lambda m: f'"{labels.get(m.group(1), m.group(1))}"', json.dumps(value, sort_keys=True)
        )

    texts = {"GET /items (every page)": text(await list_items(client))}
    texts.update({f"GET /items/{i}": text(item) for i, item in zip(item_ids, items, strict=True)})
    texts.update({f"search {n}": text(h) for n, h in enumerate(hits)})
    return texts


async def rolled_back_answers(
    client: httpx.AsyncClient, item_ids: Sequence[str], queries: Sequence[bytes]
) -> dict[str, str]:
    r = await client.post("/admin/migration", params={"action": "rollback"})
    if r.status_code != 200:
        raise RuntimeError(f"rollback: {r.status_code} {r.text[:300]}")
    return await answers(client, item_ids, queries)


async def replay(client: httpx.AsyncClient, writes: Sequence[Acknowledged]) -> None:
    for ack in writes:
        files = {"images": ("photo.jpg", ack.photo, "image/jpeg")}
        r = await client.post(f"/items/{ack.item_id}/images", files=files)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"replaying {ack.item_id}: {r.status_code} {r.text[:200]}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Run:
    images: int
    items: int
    seed_s: float
    saturation_rps: float
    baseline: Phase
    migration: Phase
    reembed_s: float
    lost: list[str]
    differing: list[str]
    differing_before: int
    compared: int
    unacknowledged: int

    def lines(self) -> list[str]:
        b, m = self.baseline, self.migration
        p99_b, p99_m = b.p(99), m.p(99)
        ratio = p99_m / p99_b
        searches_failed = m.failed(SEARCH_ENDPOINT)
        enrolls_failed = m.failed(ENROLL_ENDPOINT)
        acked = len(m.acknowledged)
        rows = [
            (
                "failed searches during the migration",
                "0",
                f"{len(searches_failed)} of {len(m.of(SEARCH_ENDPOINT))}"
                + (f" {sorted(set(searches_failed))}" if searches_failed else ""),
                not searches_failed,
            ),
            (
                "lost enrollments after the switch",
                "0",
                f"{len(self.lost)} (of {self.items} seeded items and {acked} acknowledged during "
                f"the migration, {len(b.acknowledged)} before)",
                not self.lost,
            ),
            (
                "search p99 with / without migration",
                f"<= {TARGET_P99_RATIO}x",
                f"{p99_m:.1f} / {p99_b:.1f} ms = {ratio:.2f}x",
                ratio <= TARGET_P99_RATIO,
            ),
            (
                "after rollback, answers = a service that never migrated",
                "byte-identical",
                f"{self.compared - len(self.differing)}/{self.compared} equal"
                + (f", differ: {self.differing[:5]}" if self.differing else "")
                + f" ({self.differing_before} differed before the replay)",
                self.identical,
            ),
        ]
        out = [
            f"{self.images} images in {self.items} items, enrolled in {self.seed_s:.1f} s "
            f"({self.images / self.seed_s:.1f} images/s)",
            f"saturation of the 90/10 mix (closed loop): {self.saturation_rps:.1f} answers/s; "
            f"offered {b.offered_rps:.1f}/s (open loop)",
            f"without migration: {b.seconds:.0f} s, search p50 {b.p(50):.1f} ms p99 {p99_b:.1f} "
            f"ms, {len(b.failed(SEARCH_ENDPOINT))} failed searches ({b.rejected()} answered "
            "503), "
            f"{len(b.failed(ENROLL_ENDPOINT))} failed enrollments",
            f"with migration: re-embedding {self.reembed_s:.1f} s "
            f"({self.images / self.reembed_s:.1f} images/s), {m.seconds:.0f} s of load with the "
            f"switch; search p50 {m.p(50):.1f} ms p99 {p99_m:.1f} ms; "
            f"{len(enrolls_failed)} failed enrollments"
            + (f" {sorted(set(enrolls_failed))}" if enrolls_failed else "")
            + (
                f", {self.unacknowledged} unacknowledged (left out of the comparison)"
                if self.unacknowledged
                else ""
            ),
            *(
                f"  {label}: {len(m.of(SEARCH_ENDPOINT, part))} searches, p50 "
                f"{m.p(50, part):.1f} ms p99 {m.p(99, part):.1f} ms, "
                f"{len(m.failed(SEARCH_ENDPOINT, part))} failed ({m.rejected(part)} answered 503)"
                for label, part in (
                    ("while re-embedding", "re-embedding"),
                    ("around the switch", "switch"),
                )
            ),
            f"{'target':<58} {'wanted':>15}  measured",
        ]
        out += [f"{name:<58} {want:>15}  {got}  {verdict(ok)}" for name, want, got, ok in rows]
        return out

    @property
    def identical(self) -> bool:
        """Equal after the replay, and the comparison saw the writes before it (if any)."""
        sensitive = self.differing_before > 0 or not self.migration.acknowledged
        return not self.differing and sensitive

    @property
    def passed(self) -> bool:
        ratio = self.migration.p(99) / self.baseline.p(99)
        return (
            not self.migration.failed(SEARCH_ENDPOINT)
            and not self.lost
            and ratio <= TARGET_P99_RATIO
            and self.identical
        )


async def run(
    args: argparse.Namespace, model: Path, new_model: Path, env: dict[str, str], root: Path
) -> Run:
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"# {time.monotonic() - began:6.1f} s  {line}", flush=True)

    t = time.perf_counter()
    gallery = build_gallery(args.images, args.views_per_item, args.queries)
    say(
        f"{gallery.images} views made in {time.perf_counter() - t:.1f} s; load average "
        f"{os.getloadavg()[0]:.1f} (2 shared cores: figures are rough when it is high)"
    )
    data_dir, control_dir = root / "data", root / "control"
    service_env = {"RETRIEVAL_MIGRATION_POLL_S": str(POLL_S), **env}
    with ExitStack() as stack:
        url = stack.enter_context(
            service_process(
                model.resolve(), data_dir, env=service_env, log_path=root / "service.log"
            )
        )
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT + 8)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            t = time.perf_counter()
            await enroll_gallery(client, gallery)
            seed_s = time.perf_counter() - t
            say(f"enrolled {gallery.images} images in {seed_s:.1f} s")

            scenario, _ = mix(gallery, "sat-")
            samples = await run_closed_loop(
                client, scenario.operation, users=args.clients, duration_s=args.saturation_s
            )
            saturation = sum(s.ok for s in samples) / args.saturation_s
            rate = args.load * saturation
            say(f"saturation {saturation:.1f} answers/s; open loop at {rate:.1f}/s")

            scenario, enroll = mix(gallery, "base-")
            baseline = Phase("without migration", rate, args.window_s)
            shed_before = await scrape_shed(client)
            baseline.samples = await open_loop(client, scenario, rate, args.window_s)
            baseline.acknowledged = list(enroll.acknowledged)
            shed_after = await scrape_shed(client)
            say(
                f"without migration: search p99 {baseline.p(99):.1f} ms; the service's "
                f"rejections: {describe(shed_between(shed_before, shed_after))}"
            )

            copy_store(data_dir, control_dir)
            record_migration(data_dir, new_model)
            await wait_status(client, lambda s: s["state"] == "re-embedding", 60)
            migration, reembed_s, _ = await migrate_under_load(
                client,
                gallery,
                rate,
                switch_window_s=args.switch_window_s,
                timeout_s=args.timeout_s,
            )
            shed_before, shed_after = shed_after, await scrape_shed(client)
            say(
                f"re-embedded in {reembed_s:.1f} s; switched; search p99 {migration.p(99):.1f} "
                f"ms; the service's rejections: {describe(shed_between(shed_before, shed_after))}"
            )
            lost = await lost_enrollments(
                client, gallery, [*baseline.acknowledged, *migration.acknowledged]
            )

            rng = random.Random(1)
            seeded = [i for i, _ in gallery.items]
            compared_ids = sorted(
                {a.item_id for a in migration.acknowledged}
                | set(rng.sample(seeded, min(args.compare_items, len(seeded))))
            )
            # The reference service starts (on the copy) while this one rolls back: nothing is
            # timed any more.
            reference = service_process(
                model.resolve(), control_dir, env=service_env, log_path=root / "control.log"
            )
            control_url, ours = await asyncio.gather(
                asyncio.to_thread(stack.enter_context, reference),
                rolled_back_answers(client, compared_ids, gallery.queries),
            )
            say(f"rolled back; {len(ours)} answers read")
        async with httpx.AsyncClient(base_url=control_url, timeout=60) as client:
            # Before the replay the reference lacks the migration's writes: the comparison
            # must see that, or its "identical" would mean nothing.
            before = await answers(client, compared_ids, gallery.queries)
            await replay(client, migration.acknowledged)
            theirs = await answers(client, compared_ids, gallery.queries)
            say(f"reference service: {len(migration.acknowledged)} writes replayed, compared")
    unacknowledged = sum(not s.ok for s in migration.of(ENROLL_ENDPOINT))
    differing = [k for k in ours if ours[k] != theirs.get(k)]
    differing_before = sum(ours[k] != before.get(k) for k in ours)
    return Run(
        images=gallery.images,
        items=len(gallery.items),
        seed_s=seed_s,
        saturation_rps=saturation,
        baseline=baseline,
        migration=migration,
        reembed_s=reembed_s,
        lost=lost,
        differing=differing,
        differing_before=differing_before,
        compared=len(ours),
        unacknowledged=unacknowledged,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_service_flags(parser)
    parser.add_argument(
        "--new-model",
        type=Path,
        default=None,
        help="the migration's target (default: --model under another version)",
    )
    parser.add_argument("--images", type=int, default=10_000, help="gallery images")
    parser.add_argument("--views-per-item", type=int, default=5)
    parser.add_argument("--queries", type=int, default=40, help="distinct search views")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (saturation)")
    parser.add_argument("--saturation-s", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=30.0, help="the load without migration")
    parser.add_argument(
        "--switch-window-s", type=float, default=4.0, help="load seconds around the switch"
    )
    parser.add_argument("--load", type=float, default=0.5, help="share of the saturation rate")
    parser.add_argument(
        "--compare-items",
        type=int,
        default=1000,
        help="seeded items compared after rollback (beside every one written "
        "during the migration and the whole listing)",
    )
    parser.add_argument("--timeout-s", type=float, default=4 * 3600, help="for the re-embedding")
    args = parser.parse_args(argv)
    model, env = service_flags(args)
    with tempfile.TemporaryDirectory(prefix="migration-under-load-") as tmp:
        root = Path(tmp)
        new_model = args.new_model or write_reversioned(model, root / "new-model")
        result = asyncio.run(run(args, model, new_model, env, root))
    for line in result.lines():
        print(line)
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
