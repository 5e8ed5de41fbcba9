"""The compose topology without Docker: three real ``python -m app.server`` replicas on one Redis
namespace and one shared data directory, behind Debian's ``nginx`` running the shipped
``deploy/nginx.conf`` (only the upstream addresses, the listen address and the file paths are
rewritten for the machine). Requests go through nginx for real.

Nothing in an answer names the replica that gave it, so the spread is read from each replica's
own ``/metrics`` (``http_requests_total``), scraped directly on its port.
"""

from __future__ import annotations

import os
import re
import socketserver
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from bench.crash_soak import noise_png
from bench.nginx_front import NGINX_CONF, machine_config, nginx_command, running_nginx
from bench.nginx_front import nginx_binary as find_nginx
from bench.service_process import free_port, stop_process, wait_ready
from tests import redis_server
from tests.tiny_artifact import write_tiny_artifact

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 3
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    binary = find_nginx()
    if binary is None:
        pytest.fail("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    return binary


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_served(self, method: str, route: str) -> float:
        """This replica's count of ``method route`` answered 2xx, from its own /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "http_requests_total"
            and sample.labels.get("method") == method
            and sample.labels.get("route") == route
            and sample.labels.get("status", "").startswith("2")
        )


@dataclass
class Topology:
    lb: str
    replicas: list[Replica]
    data_dir: Path
    nginx_dir: Path


@contextmanager
def _started_replicas(
    model: Path, data_dir: Path, namespace: str, logs: Path
) -> Iterator[list[Replica]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RETRIEVAL_MODEL_PATH": str(model),
        "RETRIEVAL_DATA_DIR": str(data_dir),
        "RETRIEVAL_REDIS_URL": redis_server.REDIS_URL,
        "RETRIEVAL_REDIS_NAMESPACE": namespace,
        "RETRIEVAL_ALLOW_GPU": "false",
        "RETRIEVAL_LOG_LEVEL": "warning",
        "RETRIEVAL_WORKER_THREADS": "2",
        "RETRIEVAL_INFERENCE_THREADS": "1",
    }
    replicas: list[Replica] = []
    try:
        # All three start at once: their model loads overlap instead of adding up.
        for _ in range(REPLICAS):
            port = free_port()
            log_path = logs / f"replica-{port}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "app.server", "--port", str(port)],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            replicas.append(Replica(port, proc, log_path))
        for replica in replicas:
            try:
                wait_ready(replica.proc, replica.url, 60, poll_s=0.05)
            except RuntimeError as exc:
                pytest.fail(f"{exc}: {replica.log_path.read_text(errors='replace')}")
        yield replicas
    finally:
        for replica in replicas:
            stop_process(replica.proc)


@pytest.fixture(scope="module")
def topology(nginx_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    workdir = tmp_path_factory.mktemp("replicas")
    model = write_tiny_artifact(workdir / "model")
    data_dir = workdir / "shared-data"  # the compose file's named blob volume
    namespace = f"test-lb-{uuid.uuid4().hex[:8]}"
    nginx_dir = workdir / "nginx"
    try:
        with (
            _started_replicas(model, data_dir, namespace, workdir) as replicas,
            running_nginx(nginx_binary, [r.port for r in replicas], nginx_dir) as lb,
        ):
            yield Topology(lb, replicas, data_dir, nginx_dir)
    finally:
        client = redis.Redis.from_url(redis_server.REDIS_URL)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


class DroppingUpstream:
    """A TCP server that reads each whole request and closes the connection without an
    answer: a replica that dies while handling it. Counts the requests it received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        received = self.received

        class Drop(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = self.rfile.readline()
                    if not line:
                        return
                    head += line
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                self.rfile.read(int(length.group(1)) if length else 0)
                received.append(head.split(b" ", 1)[0])  # the method

        return Drop

    def __enter__(self) -> DroppingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _search(client: httpx.Client, seed: int) -> httpx.Response:
    return client.post("/search", params={"k": 3}, files={"image": ("q.png", noise_png(seed))})


def test_the_shipped_config_passes_nginx_t(nginx_binary: str, tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(machine_config([free_port() for _ in range(REPLICAS)], free_port(), tmp_path))
    done = subprocess.run(
        nginx_command(nginx_binary, conf, tmp_path, test_only=True), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


def test_the_configs_limits_are_the_services_defaults() -> None:
    text = NGINX_CONF.read_text()
    defaults = Settings()

    def value(directive: str) -> str:
        (found,) = re.findall(rf"^\s*{directive} ([^;]+);", text, re.MULTILINE)
        return str(found)

    assert int(value("client_max_body_size").removesuffix("m")) * MiB == defaults.max_request_bytes
    assert float(value("client_header_timeout").removesuffix("s")) == defaults.header_timeout_s
    assert float(value("client_body_timeout").removesuffix("s")) == defaults.body_timeout_s
    # nginx drops an idle upstream connection before the replica does (else a POST may be sent
    # on a connection being closed, and fail without a retry).
    upstream = text[text.index("upstream retrieval_api {") :].split("}", 1)[0]
    (idle,) = re.findall(r"keepalive_timeout (\d+)s;", upstream)
    assert float(idle) < defaults.idle_timeout_s
    # POST and PATCH that reached a replica are never sent to a second one.
    assert "non_idempotent" not in value("proxy_next_upstream")


def test_requests_are_spread_over_the_three_replicas(topology: Topology) -> None:
    before = [r.requests_served("POST", "/search") for r in topology.replicas]
    with httpx.Client(base_url=topology.lb, timeout=30) as client:
        answers = [_search(client, seed) for seed in range(24)]
        traced = client.get("/readyz", headers={"X-Request-Id": "trace-me-42"})
    assert [a.status_code for a in answers] == [200] * len(answers), answers[-1].text
    # nginx gives every request an id (32 hex digits) and keeps the client's own.
    assert all(re.fullmatch(r"[0-9a-f]{32}", a.headers["x-request-id"]) for a in answers)
    assert traced.status_code == 200 and traced.headers["x-request-id"] == "trace-me-42"
    served = [
        r.requests_served("POST", "/search") - b
        for r, b in zip(topology.replicas, before, strict=True)
    ]
    assert sum(served) == len(answers)
    # Round robin per nginx worker: every replica takes a fair share, none takes them all.
    assert min(served) >= 4, served


def test_an_enrollment_through_nginx_is_stored_once(topology: Topology) -> None:
    item_id = f"lb-{uuid.uuid4().hex[:8]}"
    image = noise_png(1001)
    with httpx.Client(base_url=topology.lb, timeout=30) as client:
        r = client.post(f"/items/{item_id}/images", files={"images": ("a.png", image)})
        assert r.status_code == 201, r.text
        again = client.get(f"/items/{item_id}")
    assert again.status_code == 200, again.text
    # Every replica reads the one shared store: the item with its one image, once.
    for replica in topology.replicas:
        item = httpx.get(f"{replica.url}/items/{item_id}", timeout=10)
        assert item.status_code == 200, item.text
        assert item.json()["image_count"] == 1 and len(item.json()["image_ids"]) == 1, item.json()
    served = [r.requests_served("POST", "/items/{item_id}/images") for r in topology.replicas]
    assert sum(served) == 1, served  # one replica took it; nginx did not send it twice
    # Every replica's index has it once its change feed reached the write's position.
    position = r.headers["x-retrieval-position"]
    assert r.json()["position"] == position
    for replica in topology.replicas:
        found = httpx.post(
            f"{replica.url}/search",
            params={"k": 3, "after": position},
            files={"image": ("q.png", image)},
            timeout=10,
        )
        assert found.status_code == 200, found.text
        assert [hit["item_id"] for hit in found.json()["results"]].count(item_id) == 1
    # The original bytes are in the shared directory once (content-addressed).
    blobs = [p for p in (topology.data_dir / "blobs").rglob("*") if p.is_file()]
    assert sum(p.read_bytes() == image for p in blobs) == 1


def test_a_post_that_reached_a_failing_replica_is_not_resent_but_a_get_is(
    nginx_binary: str, topology: Topology, tmp_path: Path
) -> None:
    # The dropping upstream first: round robin starts there, and its first failure takes it
    # out (max_fails=1) for the rest of the test. One nginx per method, each with fresh state.
    replica = topology.replicas[1]
    before = replica.requests_served("POST", "/search")
    with DroppingUpstream() as dropper:
        upstreams = [dropper.port, replica.port]
        with (
            running_nginx(nginx_binary, upstreams, tmp_path / "p") as lb,
            httpx.Client(base_url=lb, timeout=30) as client,
        ):
            posts = [_search(client, seed).status_code for seed in range(4)]
        with (
            running_nginx(nginx_binary, upstreams, tmp_path / "g") as lb,
            httpx.Client(base_url=lb, timeout=30) as client,
        ):
            gets = [client.get("/readyz").status_code for _ in range(4)]
    assert dropper.received == [b"POST", b"GET"], dropper.received
    # The POST the dropper took is answered 502, never sent on; the other three were served.
    assert sorted(posts) == [200, 200, 200, 502], posts
    assert replica.requests_served("POST", "/search") - before == 3
    # The GET it took moved to the replica: every GET answered.
    assert gets == [200] * 4, gets


def test_with_one_replica_stopped_searches_are_still_answered(topology: Topology) -> None:
    stopped, *running = topology.replicas
    stop_process(stopped.proc)
    before = [r.requests_served("POST", "/search") for r in running]
    with httpx.Client(base_url=topology.lb, timeout=30) as client:
        answers = [_search(client, seed) for seed in range(12)]
        ready = client.get("/readyz")
    # Connection refused: the request never reached the stopped replica, so even a POST
    # moves to the next one.
    assert [a.status_code for a in answers] == [200] * len(answers), answers[-1].text
    assert ready.status_code == 200
    # nginx did try the stopped one (so the 200s above include requests it moved).
    refused = re.compile(
        rf"Connection refused\).*\"POST /search.*upstream: \"http://127\.0\.0\.1:{stopped.port}/"
    )
    assert refused.search((topology.nginx_dir / "error.log").read_text())
    served = [
        r.requests_served("POST", "/search") - b for r, b in zip(running, before, strict=True)
    ]
    assert sum(served) == len(answers) and min(served) > 0, served
