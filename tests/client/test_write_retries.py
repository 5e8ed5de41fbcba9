"""Writes retried with one Idempotency-Key: the retry loop on scripted answers, and the folder
uploader against the real service when the store loses an EXEC's answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from client.file_outcome import Outcome
from client.item_uploader import ItemUploader
from client.service_limits import read_limits
from client.write_retries import (
    IDEMPOTENCY_HEADER,
    RetryPolicy,
    send_idempotent,
    send_idempotent_async,
)
from tests import redis_server
from tests.live_server import live_server
from tests.store.conftest import _drop_namespace
from tests.store.resp_cutting_proxy import RespCuttingProxy
from tests.tiny_artifact import write_tiny_artifact

REQUEST = httpx.Request("POST", "http://service/items/x/images")


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, headers=headers, request=REQUEST)


class Script:
    """A ``send`` that plays back answers (or raises transport errors) and keeps the headers."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.headers: list[dict[str, str]] = []

    def __call__(self, headers: dict[str, str]) -> httpx.Response:
        self.headers.append(dict(headers))
        nxt = self.answers.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt


def test_503s_and_lost_connections_are_retried_with_one_key_honouring_retry_after() -> None:
    waits: list[float] = []
    send = Script(
        answer(503, "2"), httpx.ReadTimeout("lost", request=REQUEST), answer(503), answer(201)
    )
    policy = RetryPolicy(attempts=4, first_wait_s=0.5, max_wait_s=10, sleep=waits.append)
    assert send_idempotent(send, policy).status_code == 201
    assert waits == [2.0, 1.0, 2.0]  # Retry-After, then back-off 0.5 * 2**1 and 0.5 * 2**2
    keys = {h[IDEMPOTENCY_HEADER] for h in send.headers}
    assert len(send.headers) == 4 and len(keys) == 1 and len(keys.pop()) == 32


def test_other_answers_are_returned_at_once_and_attempts_are_capped() -> None:
    for status in (201, 204, 404, 422, 500):
        send = Script(answer(status))
        assert send_idempotent(send, RetryPolicy(sleep=lambda s: None)).status_code == status
    waits: list[float] = []
    send = Script(answer(503, "60"), answer(503, "60"), answer(503, "60"))
    last = send_idempotent(send, RetryPolicy(attempts=3, max_wait_s=5, sleep=waits.append))
    assert last.status_code == 503 and waits == [5, 5]
    with pytest.raises(httpx.ConnectError):
        send_idempotent(
            Script(*[httpx.ConnectError("down", request=REQUEST)] * 2),
            RetryPolicy(attempts=2, sleep=lambda s: None),
        )
    # Two writes never share a key.
    first, second = Script(answer(201)), Script(answer(201))
    send_idempotent(first)
    send_idempotent(second)
    assert first.headers[0][IDEMPOTENCY_HEADER] != second.headers[0][IDEMPOTENCY_HEADER]


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    _drop_namespace(name)


@pytest.mark.redis
def test_an_upload_whose_commit_answer_is_lost_is_enrolled_once(
    tmp_path: Path, namespace: str, photo_views: dict[str, list[bytes]]
) -> None:
    shared = urlparse(redis_server.REDIS_URL)
    paths = []
    for i, view in enumerate(photo_views["coffee"][:3]):
        paths.append(tmp_path / f"mug-{i}.jpg")
        paths[-1].write_bytes(view)
    with RespCuttingProxy(shared.hostname or "127.0.0.1", shared.port or 6379) as proxy:
        settings = Settings(
            model_path=write_tiny_artifact(tmp_path / "model"),
            data_dir=tmp_path / "data",
            redis_url=proxy.url,
            redis_namespace=namespace,
            reconcile_interval_s=0,
        )
        with (
            live_server(create_app(settings)) as url,
            httpx.Client(base_url=url, timeout=30) as client,
        ):
            proxy.cut_next_exec(deliver=True)  # committed, answer lost: 503 "outcome unknown"
            uploader = ItemUploader(
                client, read_limits(client), "mug", retry=RetryPolicy(sleep=lambda s: None)
            )
            outcomes = [o for batch in uploader.upload(paths) for o in batch]
            assert proxy.cuts == 1
            assert [o.outcome for o in outcomes] == [Outcome.ENROLLED] * 3
            stored = client.get("/items/mug").json()
            assert stored["image_count"] == 3 == uploader.image_count
            assert sorted(stored["image_ids"]) == sorted(o.image_id for o in outcomes)


def test_the_async_sender_follows_the_same_rules() -> None:
    async def scenario() -> None:
        sent: list[dict[str, str]] = []
        answers: list[httpx.Response | Exception] = [
            answer(503, "0.01"),
            httpx.ReadTimeout("lost", request=REQUEST),
            answer(201),
        ]

        async def send(headers: dict[str, str]) -> httpx.Response:
            sent.append(dict(headers))
            nxt = answers.pop(0)
            if isinstance(nxt, Exception):
                raise nxt
            return nxt

        policy = RetryPolicy(attempts=4, first_wait_s=0.01)
        assert (await send_idempotent_async(send, policy)).status_code == 201
        assert len(sent) == 3 and len({h[IDEMPOTENCY_HEADER] for h in sent}) == 1
        answers[:] = [answer(503)] * 2
        assert (
            await send_idempotent_async(send, RetryPolicy(attempts=2, first_wait_s=0))
        ).status_code == 503
        assert answers == []
        answers[:] = [httpx.ConnectError("down", request=REQUEST)] * 2
        with pytest.raises(httpx.ConnectError):
            await send_idempotent_async(send, RetryPolicy(attempts=2, first_wait_s=0))

    asyncio.run(scenario())
