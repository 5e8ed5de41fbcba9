"""Searches while the store stalls: search latency with writers hammering a Redis that answers,
then the same load while that Redis is stopped (SIGSTOP), side by side in one run.

    python -m bench.stall_search_latency [--model M] [--writers 16] [--seconds 8]

The service runs as it ships (``python -m app.server``, its defaults unless ``--env``) on a
private ``redis-server`` this script starts on a free port. One client searches in a closed
loop while ``--writers`` clients (by default twice the service's worker threads) enroll new
items as fast as they are answered, for ``--seconds`` with Redis answering and again with it
stalled. Printed: search p50/p99 in both phases and their ratio (target: the stalled p99 at most
2 x the other), the answers by status (target: every search 200, the writes 503s only, no other
5xx) and how long a stalled write took to get its 503 (the write deadline,
``RETRIEVAL_STORE_WRITE_DEADLINE_MS``). The admission queue is set to admit every client
(unless ``--env`` sets it), so the stall's effect is measured, not load shedding.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from app.settings import Settings
from bench.loadtest.latency_stats import nearest_rank_percentile
from bench.loadtest.photo_set import build_photo_set
from bench.service_flags import add_service_flags, service_flags
from bench.service_process import free_port, service_process

# The issue's bound: a stall may at most double the searches' p99.
TARGET_P99_RATIO = 2.0


@dataclass
class Phase:
    search_ms: list[float] = field(default_factory=list)  # answered 200
    search_status: Counter[int] = field(default_factory=Counter)
    write_status: Counter[int] = field(default_factory=Counter)
    write_503_s: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        """The searches' ``q``-th latency percentile (0 < q <= 100), ms."""
        return nearest_rank_percentile(self.search_ms, q) if self.search_ms else float("nan")


def _start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=1).ping():
                return proc, url
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the private redis-server did not start")
        time.sleep(0.05)


async def _phase(url: str, query: bytes, views: list[bytes], writers: int, seconds: float) -> Phase:
    phase = Phase()
    end = time.monotonic() + seconds

    async def searcher(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end:
            start = time.monotonic()
            r = await client.post("/search", files={"image": ("q.jpg", query)})
            phase.search_status[r.status_code] += 1
            if r.status_code == 200:
                phase.search_ms.append(1000 * (time.monotonic() - start))

    async def writer(client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while time.monotonic() < end:
            start = time.monotonic()
            blob = views[(n + i) % len(views)]
            r = await client.post(
                f"/items/stall-{uuid.uuid4().hex[:10]}/images", files={"images": ("w.jpg", blob)}
            )
            phase.write_status[r.status_code] += 1
            if r.status_code == 503:
                phase.write_503_s.append(time.monotonic() - start)
            i += 1

    limits = httpx.Limits(max_connections=writers + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(searcher(client), *(writer(client, n) for n in range(writers)))
    return phase


def _line(name: str, phase: Phase) -> str:
    def by_status(counts: Counter[int]) -> str:
        return ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))

    slowest = f", slowest 503 {max(phase.write_503_s):.2f} s" if phase.write_503_s else ""
    return (
        f"{name:<16} searches {by_status(phase.search_status)}, p50 {phase.p(50):.1f} ms, "
        f"p99 {phase.p(99):.1f} ms; writes {by_status(phase.write_status)}{slowest}"
    )


def run(model: Path, env: dict[str, str], writers: int | None, seconds: float) -> int:
    # The service's settings as this run sets them (its environment plus --env).
    settings = Settings.model_validate(
        {k.removeprefix("RETRIEVAL_").lower(): v for k, v in env.items()}
    )
    writers = writers or 2 * settings.worker_threads
    # Every writer and the searcher admitted: the stall's effect on searches is measured, not
    # the admission queue shedding the load (unless --env sets the queue).
    env = {"RETRIEVAL_ADMISSION_QUEUE": str(writers + 2), **env}
    photos = build_photo_set(4, 0).all_views()
    query, views = photos[0], photos[1:]
    with tempfile.TemporaryDirectory(prefix="stall-") as tmp:
        redis_proc, redis_url = _start_redis(Path(tmp))
        try:
            with service_process(
                model.resolve(),
                Path(tmp) / "data",
                env=env,
                redis_url=redis_url,
                redis_namespace="stall",
            ) as url:
                seed = httpx.post(f"{url}/items/seed/images", files={"images": ("s.jpg", query)})
                seed.raise_for_status()
                answering = asyncio.run(_phase(url, query, views, writers, seconds))
                os.kill(redis_proc.pid, signal.SIGSTOP)
                try:
                    stalled = asyncio.run(_phase(url, query, views, writers, seconds))
                finally:
                    os.kill(redis_proc.pid, signal.SIGCONT)
        finally:
            redis_proc.kill()
            redis_proc.wait()
    ratio = stalled.p(99) / answering.p(99)
    other_5xx = sum(n for s, n in stalled.write_status.items() if s >= 500 and s != 503)
    other_5xx += sum(n for s, n in answering.write_status.items() if s >= 500 and s != 503)
    print(f"{writers} writers, 1 searcher, {seconds:g} s per phase, worker threads "
          f"{settings.worker_threads}, store threads {settings.store_threads}")  # fmt: skip
    print(_line("Redis answering", answering))
    print(_line("Redis stalled", stalled))
    verdict = "PASS" if ratio <= TARGET_P99_RATIO else "MISS"
    print(f"search p99 stalled / answering: {ratio:.2f} (target <= {TARGET_P99_RATIO:g}) {verdict}")
    refused = sum(n for s, n in stalled.search_status.items() if s != 200)
    print(f"5xx other than 503 from the writes: {other_5xx} (target 0); searches not answered "
          f"200 while stalled: {refused} (target 0)")  # fmt: skip
    return 0 if verdict == "PASS" and other_5xx == 0 and refused == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stall_search_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_service_flags(parser)
    parser.add_argument(
        "--writers", type=int, default=0, help="writer clients (default: 2 x worker threads)"
    )
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="each phase (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    model, env = service_flags(args)
    return run(model, env, args.writers or None, args.seconds)


if __name__ == "__main__":
    raise SystemExit(main())
