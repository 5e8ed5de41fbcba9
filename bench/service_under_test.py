"""The service as a benchmark runs it: one configuration (``RETRIEVAL_*`` overrides) in its own
uvicorn process on a throw-away store, a temporary SQLite file or a throw-away Redis namespace."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.process_cpu import child_pids
from bench.redis_namespace import redact_url, throwaway_namespace
from bench.service_process import service_process


@dataclass(frozen=True)
class ServiceConfig:
    """One way of running the service: ``env`` overrides the caller's ``RETRIEVAL_*``."""

    name: str
    title: str
    env: dict[str, str]


@dataclass(frozen=True)
class RunningService:
    """``store``: what a report says about the store (never a password); ``pid``: the uvicorn
    process, for its CPU time."""

    url: str
    store: dict[str, Any]
    pid: int


def _service_pid() -> int:
    """The uvicorn child this process started (a bench runs one service at a time)."""
    (pid,) = child_pids()
    return pid


@contextmanager
def running_service(
    model: Path, store: str, config: ServiceConfig, *, log_dir: Path, redis_url: str
) -> Iterator[RunningService]:
    """The service under ``config`` on a throw-away ``store`` (``"sqlite"`` or ``"redis"``, on
    the Redis at ``redis_url``). It stops before its Redis keys are deleted; the key count is
    then in ``store["keys_deleted"]``."""
    log = log_dir / f"service-{store}-{config.name}.log"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        data_dir = Path(tmp) / "data"
        if store == "sqlite":
            with service_process(model.resolve(), data_dir, env=config.env, log_path=log) as url:
                sqlite = {"backend": "sqlite", "path": "temporary SQLite file"}
                yield RunningService(url, sqlite, _service_pid())
            return
        with throwaway_namespace(redis_url) as ns:
            info: dict[str, Any] = {
                "backend": "redis",
                "url": redact_url(redis_url),
                "namespace": ns.name,
            }
            with service_process(
                model.resolve(),
                data_dir,
                env=config.env,
                log_path=log,
                redis_url=redis_url,
                redis_namespace=ns.name,
            ) as url:
                yield RunningService(url, info, _service_pid())
        info["keys_deleted"] = ns.keys_deleted
