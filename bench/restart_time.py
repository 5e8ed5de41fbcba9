"""Time to ready after a restart: the index from its snapshot + replay, against a full rebuild.

    python -m bench.restart_time --store sqlite --items 1000000
    python -m bench.restart_time --store redis --items 200000

The store is filled through the store API (no model: one clustered random 1280-d embedding per
item, under the served model's identity; SQLite without an fsync per commit while filling),
then the real service (``python -m app.server``, the default model) is started ``--rounds``
times each way, side by side:

* **rebuild**: no snapshot file, so every item is read from the store (today's start-up); the
  service then snapshots its index at once, which the next start uses;
* **snapshot**: after ``--changes`` writes made through the store API while the service was
  down (new items, and deletions), the service loads the snapshot and replays those writes
  (SQLite: the change log; Redis: the change feed, ``/readyz`` 503 until caught up).

Printed per start: seconds from spawning the process to ``/readyz`` 200 (what a load balancer
waits for; model loading and imports included) and the seconds the service itself reports for
bringing its index in step (``retrieval_index_startup_seconds``); the ratios snapshot/rebuild
of both, against issue 11's bound (≤ 0.1×). After each snapshot start the index is checked
against the store (``/admin/index-digest``). Redis runs on a private ``redis-server`` without
persistence. ``--data-dir`` keeps the filled store for another run (filling 10^6 SQLite items
takes minutes); the reconciler's periodic full pass is off for the runs
(``RETRIEVAL_RECONCILE_INTERVAL_S=0``: it would read every item again meanwhile).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from artifact.preprocess_spec import PreprocessSpec
from bench.redis_server_process import start_redis
from bench.report_files import write_report_files
from bench.service_flags import add_service_flags, service_flags
from bench.service_process import free_port, service_process, stop_process
from bench.targets import Target, targets_table
from store.records import ModelIdentity, NewImage
from store.redis_store import RedisStore
from store.sqlite_store import SqliteStore
from store.store import Store

NAMESPACE = "bench-restart"
CLUSTERS = 1000
FILL_REPORT_EVERY = 50_000


@dataclass(frozen=True)
class Start:
    how: str  # "rebuild" or "snapshot"
    items: int
    replayed_writes: int
    ready_s: float  # spawn -> /readyz 200
    in_step_s: float  # the service's own retrieval_index_startup_seconds
    index_agrees: bool | None  # /admin/index-digest after the start (None: not checked)


def identity_of(model: Path) -> ModelIdentity:
    spec = PreprocessSpec.from_json(model.with_suffix(".json").read_text())
    return ModelIdentity(spec.model_name, spec.model_version, spec.embedding_dim)


def embeddings(start: int, count: int, dim: int) -> np.ndarray:
    """``(count, dim)`` float32: items ``start..`` around ``CLUSTERS`` fixed random centres."""
    centres = np.random.default_rng(0).normal(size=(CLUSTERS, dim)).astype(np.float32)
    rng = np.random.default_rng(start + 1)
    picks = rng.integers(0, CLUSTERS, size=count)
    return centres[picks] + 0.3 * rng.normal(size=(count, dim)).astype(np.float32)


def fill(store: Store, identity: ModelIdentity, items: int) -> None:
    store.claim_model_identity(identity)
    have, _ = store.counts()
    started = time.monotonic()
    for start in range(have, items, 1000):
        count = min(1000, items - start)
        rows = embeddings(start, count, identity.dim)
        for i in range(count):
            n = start + i
            store.enroll(f"item-{n:08d}", [NewImage(f"{n:064x}", rows[i])])
        if (start + count) % FILL_REPORT_EVERY == 0 or start + count == items:
            rate = (start + count - have) / (time.monotonic() - started)
            print(f"  filled {start + count:,} / {items:,} items ({rate:,.0f}/s)", flush=True)


def change(store: Store, identity: ModelIdentity, changes: int, round_no: int) -> None:
    """``changes`` writes while the service is down: new items, and every fourth a deletion."""
    base = 10**8 + round_no * 10**6
    rows = embeddings(base, changes, identity.dim)
    for i in range(changes):
        if i % 4 == 3:
            store.delete_item(f"new-{round_no}-{i - 1:07d}")
        else:
            store.enroll(f"new-{round_no}-{i:07d}", [NewImage(f"{base + i:064x}", rows[i])])


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def wait_for_snapshot(url: str, items: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while metric(url, "retrieval_index_snapshot_items") != items:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no snapshot of {items} items within {timeout_s} s")
        time.sleep(0.5)


@contextmanager
def started(
    args: argparse.Namespace, data: Path, env: dict[str, str], redis_url: str | None, log: Path
) -> Iterator[tuple[str, float]]:
    t0 = time.monotonic()
    with service_process(
        args.model, data, env=env, redis_url=redis_url,
        redis_namespace=NAMESPACE if redis_url else None,
        ready_timeout_s=args.ready_timeout, log_path=log,
    ) as url:  # fmt: skip
        yield url, time.monotonic() - t0


def run(args: argparse.Namespace, store: Store, data: Path, redis_url: str | None) -> list[Start]:
    model, env = service_flags(args)
    env = {"RETRIEVAL_RECONCILE_INTERVAL_S": "0", "RETRIEVAL_LOG_LEVEL": "info", **env}
    identity = identity_of(model)
    print(f"filling the {store.backend} store to {args.items:,} items ...", flush=True)
    fill(store, identity, args.items)
    snapshot = data / "index-snapshot.bin"
    out: list[Start] = []
    for round_no in range(args.rounds):
        snapshot.unlink(missing_ok=True)
        items, _ = store.counts()
        log = data / f"service-{round_no}-rebuild.log"
        with started(args, data, env, redis_url, log) as (url, ready_s):
            in_step = metric(url, "retrieval_index_startup_seconds", how="rebuild")
            out.append(Start("rebuild", items, 0, ready_s, in_step, None))
            print(f"  rebuild: ready in {ready_s:.2f} s (index {in_step:.2f} s)", flush=True)
            wait_for_snapshot(url, items, args.ready_timeout)
        change(store, identity, args.changes, round_no)
        items, _ = store.counts()
        log = data / f"service-{round_no}-snapshot.log"
        with started(args, data, env, redis_url, log) as (url, ready_s):
            in_step = metric(url, "retrieval_index_startup_seconds", how="snapshot")
            agrees = None
            if args.verify:
                body = httpx.get(f"{url}/admin/index-digest", timeout=600).json()
                agrees = bool(body["agrees"])
            out.append(Start("snapshot", items, args.changes, ready_s, in_step, agrees))
            print(
                f"  snapshot + {args.changes} writes: ready in {ready_s:.2f} s "
                f"(index {in_step:.2f} s), index agrees with the store: {agrees}",
                flush=True,
            )
    return out


def report(args: argparse.Namespace, starts: list[Start], snapshot_bytes: int) -> str:
    def median(how: str, field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in starts if s.how == how))

    ready = median("snapshot", "ready_s") / median("rebuild", "ready_s")
    in_step = median("snapshot", "in_step_s") / median("rebuild", "in_step_s")
    agree = [s.index_agrees for s in starts if s.index_agrees is not None]
    detail = (
        f"median of {args.rounds}: {median('snapshot', 'ready_s'):.2f} s vs "
        f"{median('rebuild', 'ready_s'):.2f} s"
    )
    targets = [
        Target("ready", "time to ready, snapshot / rebuild", ready, "<=", 0.1, "x", detail),
        Target(
            "in_step", "index in step, snapshot / rebuild", in_step, None, 0, "x",
            f"{median('snapshot', 'in_step_s'):.2f} s vs {median('rebuild', 'in_step_s'):.2f} s",
        ),
        Target(
            "agrees", "indexes equal to the store after snapshot starts", sum(agree), "==",
            len(agree), "count", f"{sum(agree)} of {len(agree)} checked",
        ),
    ]  # fmt: skip
    lines = [
        f"restart time, {args.store} store, {starts[0].items:,} items, D from the model, "
        f"{args.changes} writes replayed; snapshot file {snapshot_bytes / 1e9:.2f} GB",
        "  how        items   replayed   ready s   index s   agrees",
    ]
    for s in starts:
        lines.append(
            f"  {s.how:<9}{s.items:>9,}{s.replayed_writes:>10}{s.ready_s:>10.2f}"
            f"{s.in_step_s:>10.2f}   {s.index_agrees}"
        )
    lines += targets_table({args.store: targets})
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_service_flags(parser)
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=1000, help="writes replayed per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="keep the filled store here (reused)")
    parser.add_argument("--ready-timeout", type=float, default=1800.0)
    parser.add_argument("--no-verify", dest="verify", action="store_false")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    with ExitStack() as stack:
        data = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        data.mkdir(parents=True, exist_ok=True)
        redis_url = None
        store: Store
        if args.store == "redis":
            (data / "redis").mkdir(exist_ok=True)
            port = free_port()
            stack.callback(stop_process, start_redis(port, data / "redis", conf=None))
            redis_url = f"redis://127.0.0.1:{port}/0"
            store = RedisStore(redis_url, namespace=NAMESPACE)
        else:
            store = SqliteStore(data / "store.sqlite3", durable=False)
        stack.callback(store.close)
        starts = run(args, store, data, redis_url)
        size = (data / "index-snapshot.bin").stat().st_size
        text = report(args, starts, size)
        print(text)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        write_report_files(
            args.out / f"restart-time-{stamp}",
            "restart_time.json",
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "starts": [asdict(s) for s in starts],
            },
            text,
        )


if __name__ == "__main__":
    main()
