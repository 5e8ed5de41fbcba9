"""Kill -9 of the service during concurrent enrollment: is every acknowledged image still there?

``python -m bench.crash_soak --rounds 10 --store sqlite|redis|both``. Each round starts the real
service (``python -m app.server``) on a fresh store: the embedded SQLite file, or a private
``redis-server`` run with the shipped ``deploy/redis.conf`` (AOF, ``appendfsync everysec``; only
port, bind address and directory are overridden). It enrolls a few baseline items and records
the answers to a few searches; then ``--clients`` threads enroll distinct small images (a new
item every third enrollment, else a new image of the client's current item) until the service
is killed with SIGKILL mid-way. The service is started again on the same data, and the round
counts the acknowledged (201) images whose image id the restarted service does not list, and
checks that the baseline searches answer exactly as before the kill.

With Redis, ``--redis-kill-rounds`` further rounds kill ``redis-server`` with SIGKILL at the same
moment as the service (a process crash with the host up: the README promises no acknowledged
write lost, since the kernel already holds what Redis wrote to its AOF).

Exit status 1 when any acknowledged image was lost or any baseline answer changed.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.redis_server_process import start_redis
from bench.service_process import free_port, stop_process, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "default" / "embedder.onnx"
NAMESPACE = "soak"
BASELINE_ITEMS = 6
BASELINE_QUERIES = 4
# Large enough that every item of a round is in each answer, so the baseline items' ranks
# among themselves can be compared whatever the clients enrolled around them.
SEARCH_K = 1000
# Each enrolling client starts a new item this often, else adds an image to its current one.
NEW_ITEM_EVERY = 3
# Seeds of the baseline images, queries and client images never overlap (distinct bytes).
_BASELINE_SEED = 1_000_000
_QUERY_SEED = 2_000_000


def noise_png(seed: int, side: int = 24) -> bytes:
    """A small PNG of seeded colour noise: distinct seeds give distinct bytes and embeddings."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Ack:
    item_id: str
    image_id: str


@dataclass
class RoundResult:
    store: str
    redis_killed: bool
    acknowledged: list[Ack]
    missing: list[Ack]  # acknowledged, but not listed by the restarted service
    unexpected: list[str]  # answers other than 201 before the kill ("status body")
    cut_off: int  # requests that got no answer because of the kill
    service_exit: int | None  # the killed service's return code (-9)
    answers_before: list[list[tuple[str, float]]]
    answers_after: list[list[tuple[str, float]]]  # restricted to the baseline items
    images_after: int  # images the restarted store holds (acknowledged + committed unanswered)

    @property
    def answers_changed(self) -> int:
        return sum(
            not _same_answer(a, b)
            for a, b in zip(self.answers_before, self.answers_after, strict=True)
        )


def _same_answer(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
    return [i for i, _ in a] == [i for i, _ in b] and all(
        abs(x - y) < 1e-6 for (_, x), (_, y) in zip(a, b, strict=True)
    )


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str


def start_service(
    model_path: Path, data_dir: Path, log_path: Path, redis_url: str | None, clients: int
) -> Service:
    """``python -m app.server`` on a free port, once ``/readyz`` answers 200."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "RETRIEVAL_MODEL_PATH": str(model_path),
        "RETRIEVAL_DATA_DIR": str(data_dir),
        "RETRIEVAL_REDIS_URL": redis_url or "",
        "RETRIEVAL_REDIS_NAMESPACE": NAMESPACE,
        "RETRIEVAL_ALLOW_GPU": "false",
        "RETRIEVAL_LOG_LEVEL": "warning",
        "RETRIEVAL_MAX_K": str(SEARCH_K),
        # Every client admitted: a 503 for a full queue would only thin the load.
        "RETRIEVAL_ADMISSION_QUEUE": str(2 * clients),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.server", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, 120, poll_s=0.05)
    except RuntimeError as exc:
        proc.kill()
        raise RuntimeError(f"{exc}; see {log_path}") from None
    return Service(proc, url)


def enroll(client: httpx.Client, item_id: str, image: bytes) -> httpx.Response:
    return client.post(f"/items/{item_id}/images", files={"images": ("i.png", image)})


def search(client: httpx.Client, image: bytes) -> list[tuple[str, float]]:
    r = client.post("/search", params={"k": SEARCH_K}, files={"image": ("q.png", image)})
    r.raise_for_status()
    return [(hit["item_id"], hit["score"]) for hit in r.json()["results"]]


@dataclass
class _ClientLog:
    acks: list[Ack] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    cut_off: int = 0


def _enrolling_client(url: str, number: int, out: _ClientLog) -> None:
    """Enroll until the service stops answering (it is killed)."""
    with httpx.Client(base_url=url, timeout=30) as client:
        n = 0
        item = ""
        while True:
            if n % NEW_ITEM_EVERY == 0:
                item = f"c{number}-{n}"
            try:
                r = enroll(client, item, noise_png(number * 100_000 + n))
            except httpx.TransportError:
                out.cut_off += 1
                return
            if r.status_code == 201:
                out.acks.append(Ack(item, r.json()["image_ids"][0]))
            else:
                out.unexpected.append(f"{r.status_code} {r.text[:200]}")
            n += 1


def run_round(
    model_path: Path,
    workdir: Path,
    store: str,
    *,
    kill_redis: bool = False,
    clients: int = 8,
    enroll_s: float = 1.0,
) -> RoundResult:
    """One round (see the module docstring) in ``workdir``, which must be empty."""
    if store not in ("sqlite", "redis") or (kill_redis and store != "redis"):
        raise ValueError(f"no such round: store={store!r}, kill_redis={kill_redis}")
    data_dir = workdir / "data"
    log_path = workdir / "service.log"
    redis_proc: subprocess.Popen[bytes] | None = None
    redis_url: str | None = None
    redis_port = 0
    if store == "redis":
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        (workdir / "redis").mkdir()
        redis_proc = start_redis(redis_port, workdir / "redis")
    service: Service | None = None
    try:
        service = start_service(model_path, data_dir, log_path, redis_url, clients)
        queries = [noise_png(_QUERY_SEED + q) for q in range(BASELINE_QUERIES)]
        with httpx.Client(base_url=service.url, timeout=30) as client:
            for i in range(BASELINE_ITEMS):
                for j in range(2):
                    r = enroll(client, f"base-{i}", noise_png(_BASELINE_SEED + 10 * i + j))
                    if r.status_code != 201:
                        raise RuntimeError(f"baseline enrollment: {r.status_code} {r.text}")
            before = [search(client, q) for q in queries]
        logs = [_ClientLog() for _ in range(clients)]
        threads = [
            threading.Thread(target=_enrolling_client, args=(service.url, c, logs[c]))
            for c in range(clients)
        ]
        for t in threads:
            t.start()
        time.sleep(enroll_s)
        service.proc.send_signal(signal.SIGKILL)
        if redis_proc is not None and kill_redis:
            redis_proc.send_signal(signal.SIGKILL)
        service_exit = service.proc.wait()
        for t in threads:
            t.join(timeout=60)
        if redis_proc is not None and kill_redis:
            redis_proc.wait()
            redis_proc = start_redis(redis_port, workdir / "redis")
        service = start_service(model_path, data_dir, log_path, redis_url, clients)
        acks = [a for log in logs for a in log.acks]
        with httpx.Client(base_url=service.url, timeout=30) as client:
            listed: dict[str, set[str]] = {}
            for item_id in sorted({a.item_id for a in acks}):
                r = client.get(f"/items/{item_id}")
                listed[item_id] = set(r.json()["image_ids"]) if r.status_code == 200 else set()
            baseline = {f"base-{i}" for i in range(BASELINE_ITEMS)}
            after = [[h for h in search(client, q) if h[0] in baseline] for q in queries]
            images_after = client.get("/info").json()["images"]
        return RoundResult(
            store=store,
            redis_killed=kill_redis,
            acknowledged=acks,
            missing=[a for a in acks if a.image_id not in listed[a.item_id]],
            unexpected=[u for log in logs for u in log.unexpected],
            cut_off=sum(log.cut_off for log in logs),
            service_exit=service_exit,
            answers_before=before,
            answers_after=after,
            images_after=images_after,
        )
    finally:
        if service is not None:
            stop_process(service.proc)
        if redis_proc is not None:
            stop_process(redis_proc)


def summary_lines(results: Sequence[RoundResult]) -> list[str]:
    """One line per kind of round: rounds, acknowledged images, lost, changed answers."""
    lines = []
    kinds = sorted({(r.store, r.redis_killed) for r in results})
    for store, redis_killed in kinds:
        rounds = [r for r in results if (r.store, r.redis_killed) == (store, redis_killed)]
        what = f"{store} + redis-server killed" if redis_killed else store
        lines.append(
            f"{what}: {len(rounds)} rounds, "
            f"{sum(len(r.acknowledged) for r in rounds)} acknowledged images, "
            f"{sum(len(r.missing) for r in rounds)} lost, "
            f"{sum(r.answers_changed for r in rounds)} baseline answers changed, "
            f"{sum(len(r.unexpected) for r in rounds)} non-201 answers before the kill, "
            f"{sum(r.cut_off for r in rounds)} requests cut off by the kill"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_soak", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10, help="kill -9 rounds per backend")
    parser.add_argument("--store", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument(
        "--redis-kill-rounds",
        type=int,
        default=3,
        help="further Redis rounds where redis-server is killed -9 too",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent enrolling clients")
    parser.add_argument(
        "--enroll-seconds", type=float, default=1.5, help="enrollment before the kill"
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="embedder.onnx")
    args = parser.parse_args(argv)
    plan: list[tuple[str, bool]] = []
    if args.store in ("sqlite", "both"):
        plan += [("sqlite", False)] * args.rounds
    if args.store in ("redis", "both"):
        plan += [("redis", False)] * args.rounds + [("redis", True)] * args.redis_kill_rounds
    results: list[RoundResult] = []
    for n, (store, kill_redis) in enumerate(plan, start=1):
        with tempfile.TemporaryDirectory(prefix="crash-soak-") as tmp:
            result = run_round(
                args.model,
                Path(tmp),
                store,
                kill_redis=kill_redis,
                clients=args.clients,
                enroll_s=args.enroll_seconds,
            )
        results.append(result)
        print(
            f"round {n}/{len(plan)} {store}{' (redis killed)' if kill_redis else ''}: "
            f"{len(result.acknowledged)} acknowledged, {len(result.missing)} lost, "
            f"{result.answers_changed} answers changed",
            flush=True,
        )
    for line in summary_lines(results):
        print(line)
    bad = any(r.missing or r.answers_changed for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
