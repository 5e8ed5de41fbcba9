from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_settings_come_from_prefixed_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETRIEVAL_MAX_K", "7")
    monkeypatch.setenv("RETRIEVAL_DEFAULT_K", "5")
    monkeypatch.setenv("RETRIEVAL_REDIS_URL", "")
    monkeypatch.setenv("RETRIEVAL_KEEP_BLOBS", "false")
    monkeypatch.setenv("RETRIEVAL_DATA_DIR", "/srv/x")
    s = Settings()
    assert (s.max_k, s.default_k, s.redis_url, s.keep_blobs) == (7, 5, None, False)
    assert s.sqlite_path == Path("/srv/x/store.sqlite3") and s.blob_dir == Path("/srv/x/blobs")


def test_a_default_k_above_max_k_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="default_k"):
        Settings(default_k=20, max_k=10)
    assert Settings(default_k=10, max_k=10).default_k == 10


@pytest.mark.parametrize(
    "name", ["max_k", "max_request_bytes", "worker_threads", "admission_queue", "queue_timeout_ms"]
)
def test_non_positive_limits_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: 0})


def test_batching_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRIEVAL_BATCHING", "false")
    monkeypatch.setenv("RETRIEVAL_BATCH_MAX_DELAY_US", "0")  # no wait at all is allowed
    monkeypatch.setenv("RETRIEVAL_ADMISSION_QUEUE", "64")
    monkeypatch.setenv("RETRIEVAL_QUEUE_TIMEOUT_MS", "500")
    s = Settings()
    assert (s.batching, s.batch_max_delay_us, s.admission_queue, s.queue_timeout_ms) == (
        False,
        0,
        64,
        500,
    )
    with pytest.raises(ValidationError, match="batch_max_delay_us"):
        Settings(batch_max_delay_us=-1)
