"""Do replicas on one Redis converge under load? Three service processes, a 90/10 search/enroll
mix, read-your-writes across replicas, and the indexes compared with the store afterwards.

    python -m bench.replica_convergence [--model M] [--replicas 3] [--seconds 10] [--clients 12]
        [--nginx]

The replicas run as they ship (``python -m app.server``) on a private ``redis-server`` with the
shipped ``deploy/redis.conf`` and one shared data directory (the shared blob volume); with
``--nginx``, behind Debian's nginx running the shipped ``deploy/nginx.conf`` (the compose
topology), every request going through it. First the
mix runs closed-loop with ``--clients`` clients spread over the replicas: that is their
saturation rate. Then it runs open-loop at ``--load`` (default 50 %) of that rate: every
enrollment goes to one replica and is followed at once by a search with ``after=<its position>``
on the next replica, which must answer 200 with the new item among its results. Meanwhile each
replica's ``retrieval_replication_lag_seconds`` is sampled every 50 ms, and each records every
write's commit-to-applied delay (``retrieval_replication_delay_seconds``, to bucket
resolution). Afterwards every replica's ``/admin/index-digest`` must agree with the store.

Printed, side by side: saturation and offered rates; plain searches' and ``after=`` searches'
p50/p99 (the difference is the wait for replication); the ``after=`` checks that saw their
write (target: all); the sampled lag's p99 and the delays' p99 bound (target <= 100 ms); each
replica's digest against the store (target: all agree, i.e. 0 divergent items); errors (503s
from the admission queue shedding a burst are counted apart: they are no failure). Exit status
1 if a target is missed or any other error occurred.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.loadtest.latency_stats import nearest_rank_percentile
from bench.loadtest.photo_set import build_photo_set
from bench.nginx_front import nginx_binary, running_nginx
from bench.redis_server_process import start_redis
from bench.service_flags import add_service_flags, service_flags
from bench.service_process import free_port, service_process, stop_process

TARGET_LAG_P99_S = 0.100
SEARCH_SHARE = 0.9
LAG_SAMPLE_S = 0.05
_LAG_LINE = re.compile(r"^retrieval_replication_lag_seconds (\S+)$", re.M)
_DELAY_BUCKET = re.compile(
    r'^retrieval_replication_delay_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M
)


@dataclass
class Tally:
    search_ms: list[float] = field(default_factory=list)
    after_ms: list[float] = field(default_factory=list)
    after_seen: int = 0
    after_missed: list[str] = field(default_factory=list)
    enrolled: int = 0
    errors: list[str] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)

    def answered(self) -> int:
        return len(self.search_ms) + len(self.after_ms) + self.enrolled


def _p(values: list[float], q: float) -> float:
    return nearest_rank_percentile(values, q) if values else float("nan")


class Mix:
    """The 90/10 mix over the replicas: searches of random views; enrollments of a view as a
    new item, each followed by an ``after=`` search on the next replica."""

    def __init__(self, clients: list[httpx.AsyncClient], views: list[bytes], seed: int) -> None:
        self.clients = clients
        self.views = views
        self.rng = random.Random(seed)
        self.tally = Tally()

    async def one(self) -> None:
        i = self.rng.randrange(len(self.clients))
        view = self.views[self.rng.randrange(len(self.views))]
        try:
            if self.rng.random() < SEARCH_SHARE:
                await self._search(self.clients[i], view)
            else:
                await self._enroll_then_read(i, view)
        except httpx.HTTPError as exc:
            self.tally.errors.append(type(exc).__name__)

    async def _search(self, client: httpx.AsyncClient, view: bytes) -> None:
        start = time.perf_counter()
        r = await client.post("/search", files={"image": ("q.jpg", view, "image/jpeg")})
        if r.status_code == 200:
            self.tally.search_ms.append((time.perf_counter() - start) * 1000)
        else:
            self.tally.errors.append(f"search {r.status_code}")

    async def _enroll_then_read(self, i: int, view: bytes) -> None:
        item = f"bench-{uuid.uuid4().hex[:12]}"
        files = {"images": ("v.jpg", view + item.encode(), "image/jpeg")}  # unique bytes
        r = await self.clients[i].post(f"/items/{item}/images", files=files)
        if r.status_code != 201:
            self.tally.errors.append(f"enroll {r.status_code}")
            return
        self.tally.enrolled += 1
        other = self.clients[(i + 1) % len(self.clients)]
        start = time.perf_counter()
        q = await other.post(
            "/search",
            params={"k": 100, "after": r.headers["x-retrieval-position"]},
            files={"image": ("q.jpg", view, "image/jpeg")},
        )
        self.tally.after_ms.append((time.perf_counter() - start) * 1000)
        if q.status_code == 200 and item in {h["item_id"] for h in q.json()["results"]}:
            self.tally.after_seen += 1
        else:
            self.tally.after_missed.append(f"{q.status_code}")


async def closed_loop(mix: Mix, clients: int, seconds: float) -> float:
    """Answers per second with ``clients`` clients each sending as soon as answered."""
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            await mix.one()

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return mix.tally.answered() / (time.monotonic() - start)


async def open_loop(mix: Mix, rate: float, seconds: float, urls: list[str]) -> None:
    """``rate`` operations per second (Poisson arrivals) for ``seconds``, lag sampled alongside."""
    stop = asyncio.Event()

    async def sample_lag() -> None:
        async with httpx.AsyncClient(timeout=5) as probe:
            while not stop.is_set():
                for url in urls:
                    match = _LAG_LINE.search((await probe.get(f"{url}/metrics")).text)
                    if match:
                        mix.tally.lag_s.append(float(match.group(1)))
                await asyncio.sleep(LAG_SAMPLE_S)

    sampler = asyncio.create_task(sample_lag())
    rng = random.Random(1)
    tasks: list[asyncio.Task[None]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tasks.append(asyncio.create_task(mix.one()))
        await asyncio.sleep(rng.expovariate(rate))
    await asyncio.gather(*tasks)
    stop.set()
    await sampler


async def delay_p99_bound_s(urls: list[str]) -> tuple[float, int]:
    """The smallest bucket bound under which 99 % of every replica's commit-to-applied delays
    fall (``retrieval_replication_delay_seconds``), and how many delays were observed."""
    buckets: dict[float, float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for url in urls:
            for le, n in _DELAY_BUCKET.findall((await client.get(f"{url}/metrics")).text):
                bound = float("inf") if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + float(n)
    total = buckets.get(float("inf"), 0.0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= 0.99 * total:
            return bound, int(total)
    return float("nan"), int(total)


async def digests(urls: list[str], timeout_s: float = 15) -> list[dict[str, object]]:
    """Each replica's /admin/index-digest once all agree, or as they stand at the timeout."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            answers = [(await client.get(f"{u}/admin/index-digest")).json() for u in urls]
            if all(a["agrees"] for a in answers) or time.monotonic() > deadline:
                return answers
            await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, urls: list[str], lb: str | None) -> int:
    views = build_photo_set(views_per_photo=4).all_views()
    # Through nginx every request, the after= search included, lands on whichever replica
    # nginx picks: what a client behind the load balancer sees.
    entry = [lb] if lb is not None else urls
    clients = [httpx.AsyncClient(base_url=u, timeout=30) for u in entry]
    try:
        saturation_mix = Mix(clients, views, seed=0)
        saturation = await closed_loop(saturation_mix, args.clients, args.seconds)
        mix = Mix(clients, views, seed=2)
        rate = args.load * saturation
        await open_loop(mix, rate, args.seconds, urls)
    finally:
        for c in clients:
            await c.aclose()
    answers = await digests(urls)
    delay_bound, delays = await delay_p99_bound_s(urls)
    t = mix.tally
    lag_p99 = _p(t.lag_s, 99)
    checks = len(t.after_ms)
    via = "through nginx (deploy/nginx.conf)" if lb is not None else "each addressed directly"
    print(f"{len(urls)} replicas on one Redis, {via}, 90/10 search/enroll, "
          f"{args.seconds:g} s per phase")  # fmt: skip
    print(f"saturation (closed loop, {args.clients} clients): {saturation:.1f} ops/s")
    errors = f"{len(t.errors)} {sorted(set(t.errors))}" if t.errors else "0"
    print(f"offered: {rate:.1f} ops/s ({args.load:.0%}); answered {t.answered()}; errors {errors}")
    print(f"plain search  p50 {_p(t.search_ms, 50):7.1f} ms  p99 {_p(t.search_ms, 99):7.1f} ms")
    print(f"after= search p50 {_p(t.after_ms, 50):7.1f} ms  p99 {_p(t.after_ms, 99):7.1f} ms")
    seen_ok = checks > 0 and t.after_seen == checks
    lag_ok = lag_p99 <= TARGET_LAG_P99_S and delay_bound <= TARGET_LAG_P99_S
    where = "through nginx" if lb is not None else "on another replica"
    print(f"read-your-writes {where}: {t.after_seen}/{checks} "
          f"{'PASS' if seen_ok else 'MISS'}")  # fmt: skip
    print(f"replication lag gauge p99 over {len(t.lag_s)} samples: {lag_p99 * 1000:.1f} ms; "
          f"commit-to-applied delay p99 <= {delay_bound * 1000:g} ms over {delays} applies "
          f"(target <= {TARGET_LAG_P99_S * 1000:.0f}) {'PASS' if lag_ok else 'MISS'}")  # fmt: skip
    agree = all(a["agrees"] for a in answers)
    for url, a in zip(urls, answers, strict=True):
        print(f"  {url}: index {a['index_items']} items, store {a['store_items']}, "
              f"{'agrees' if a['agrees'] else 'DIVERGES'}")  # fmt: skip
    print(f"indexes equal to the store after the load: {'PASS' if agree else 'MISS'}")
    failures = [e for e in t.errors if not e.endswith(" 503")]
    return 0 if (seen_ok and lag_ok and agree and not failures) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_service_flags(parser)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--clients", type=int, default=12, help="closed-loop clients")
    parser.add_argument("--load", type=float, default=0.5, help="open-loop share of saturation")
    parser.add_argument(
        "--nginx", action="store_true", help="send the load through nginx with the shipped config"
    )
    args = parser.parse_args()
    model, env = service_flags(args)
    binary = nginx_binary()
    if args.nginx and binary is None:
        raise SystemExit("nginx is not installed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="replicas-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        (root / "redis").mkdir()
        redis_port = free_port()
        stack.callback(stop_process, start_redis(redis_port, root / "redis"))
        url = f"redis://127.0.0.1:{redis_port}/0"
        urls = [
            stack.enter_context(
                service_process(
                    model, root / "data", env=env, redis_url=url, redis_namespace="bench",
                    log_path=root / f"replica-{i}.log",
                )
            )
            for i in range(args.replicas)
        ]  # fmt: skip
        lb = None
        if args.nginx and binary is not None:
            ports = [int(u.rsplit(":", 1)[1]) for u in urls]
            lb = stack.enter_context(running_nginx(binary, ports, root / "nginx"))
        raise SystemExit(asyncio.run(run(args, urls, lb)))


if __name__ == "__main__":
    main()
