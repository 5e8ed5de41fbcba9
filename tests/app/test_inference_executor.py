"""The inference executor on the tiny artifact, without HTTP: every request gets its own rows of a
shared batch (checked against the numpy oracle of the graph), the scheduling order, failures
confined to their batch, drops before inference, and when a partial batch waits."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from app.admission_control import AdmissionControl
from app.inference_executor import InferenceExecutor, Priority
from app.metrics import ServiceMetrics
from app.retriever_errors import (
    ClientGoneError,
    ExecutorClosedError,
    InferenceFailedError,
    QueueTimeoutError,
)
from artifact.onnx_embedder import OnnxEmbedder
from tests.app.gated_session import INJECTED_MESSAGE, GatedSession, gate
from tests.tiny_artifact import INPUT_SIDE, reference_embeddings

# float32 graph against the float64 oracle.
ATOL = 1e-5

Batch = npt.NDArray[np.uint8]
ExecutorFactory = Callable[..., InferenceExecutor]


@pytest.fixture
def embedder(tiny_model_path: Path) -> OnnxEmbedder:
    return OnnxEmbedder(tiny_model_path, allow_gpu=False)


@pytest.fixture
def session(embedder: OnnxEmbedder) -> GatedSession:
    return gate(embedder)


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


@pytest.fixture
def make_executor(embedder: OnnxEmbedder, metrics: ServiceMetrics) -> Iterator[ExecutorFactory]:
    executors: list[InferenceExecutor] = []

    def make(*, max_batch: int = 8, max_delay_s: float = 0.0) -> InferenceExecutor:
        executors.append(
            InferenceExecutor(
                embedder, max_batch=max_batch, max_delay_s=max_delay_s, metrics=metrics
            )
        )
        return executors[-1]

    yield make
    for executor in executors:
        executor.close()


class Images:
    """Random images; each row's bytes say which request and row it is."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(7)
        self._labels: dict[str, str] = {}

    def make(self, label: str, rows: int) -> Batch:
        batch = self._rng.integers(0, 256, (rows, 3, INPUT_SIDE, INPUT_SIDE), dtype=np.uint8)
        for i, row in enumerate(batch):
            self._labels[_digest(row)] = f"{label}.{i}" if rows > 1 else label
        return batch

    def schedule(self, session: GatedSession) -> list[list[str]]:
        """Each model call's rows, by label."""
        return [[self._labels[_digest(row)] for row in batch] for batch in session.batches]


def _digest(row: npt.NDArray[np.uint8]) -> str:
    return hashlib.sha256(row.tobytes()).hexdigest()


def assert_embeds(future: Future[npt.NDArray[np.float32]], batch: Batch) -> None:
    got = future.result(timeout=30)
    assert got.dtype == np.float32 and got.shape == (len(batch), 32)
    np.testing.assert_allclose(got, reference_embeddings(batch), rtol=0, atol=ATOL)


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@dataclass
class Busy:
    """The executor's first batch, search "X", its model call held until ``release`` is set."""

    release: threading.Event
    future: Future[npt.NDArray[np.float32]]
    batch: Batch


def keep_busy(executor: InferenceExecutor, session: GatedSession, images: Images) -> Busy:
    """Hold the executor in its first model call: what is submitted next waits in its queue."""
    release = session.hold(0)
    batch = images.make("X", 1)
    future = executor.submit(batch)
    session.wait_for_calls(1)
    return Busy(release, future, batch)


def test_requests_batched_together_each_get_their_own_rows(
    make_executor: ExecutorFactory, session: GatedSession, metrics: ServiceMetrics
) -> None:
    executor = make_executor(max_batch=16)
    images = Images()
    busy = keep_busy(executor, session, images)
    # Submitted from several threads while the model is busy: they share the next batch.
    searches = [images.make(f"S{i}", 1) for i in range(5)]
    futures: list[Future[npt.NDArray[np.float32]]] = [Future() for _ in searches]

    def submit(i: int) -> None:
        futures[i] = executor.submit(searches[i], priority=Priority.SEARCH)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(searches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert executor.pending == 5 and sample(metrics, "retrieval_inference_pending") == 5
    busy.release.set()
    assert_embeds(busy.future, busy.batch)
    for future, batch in zip(futures, searches, strict=True):
        assert_embeds(future, batch)
    schedule = images.schedule(session)
    assert schedule[0] == ["X"] and sorted(schedule[1]) == [f"S{i}" for i in range(5)]
    assert len(schedule) == 2
    assert sample(metrics, "retrieval_batch_size_count") == 2
    assert sample(metrics, "retrieval_batch_size_sum") == 6
    assert sample(metrics, "retrieval_batch_size_bucket", le="1.0") == 1  # X alone
    assert sample(metrics, "retrieval_batch_queue_wait_seconds_count") == 6
    assert sample(metrics, "retrieval_batch_inference_seconds_count") == 2
    assert sample(metrics, "retrieval_stage_seconds_count", stage="inference") == 6
    assert executor.pending == 0 and sample(metrics, "retrieval_inference_pending") == 0


def test_searches_never_wait_behind_more_than_one_enrollment_sub_batch(
    make_executor: ExecutorFactory, session: GatedSession
) -> None:
    executor = make_executor(max_batch=2)
    images = Images()
    busy = keep_busy(executor, session, images)
    submitted = [(busy.future, busy.batch)]

    def submit(label: str, rows: int, priority: Priority) -> None:
        batch = images.make(label, rows)
        submitted.append((executor.submit(batch, priority=priority), batch))

    submit("E1", 5, Priority.ENROLL)
    submit("S1", 1, Priority.SEARCH)
    submit("S2", 1, Priority.SEARCH)
    submit("S3", 1, Priority.SEARCH)
    submit("E2", 1, Priority.ENROLL)
    busy.release.set()
    for future, batch in submitted:
        assert_embeds(future, batch)
    # Sub-batches of at most 2 images; the kinds alternate while both wait (the last batch was
    # a search, so an enrollment sub-batch goes first); one batch may hold two enrollments.
    assert images.schedule(session) == [
        ["X"],
        ["E1.0", "E1.1"],
        ["S1", "S2"],
        ["E1.2", "E1.3"],
        ["S3"],
        ["E1.4", "E2"],
    ]


def test_a_failing_model_call_fails_its_batch_only(
    make_executor: ExecutorFactory, session: GatedSession, metrics: ServiceMetrics
) -> None:
    executor = make_executor(max_batch=2)
    images = Images()
    session.fail(1)
    busy = keep_busy(executor, session, images)
    enrollment = images.make("E", 3)  # two sub-batches: the first one fails
    failed = executor.submit(enrollment, priority=Priority.ENROLL)
    search = images.make("S", 1)
    after = executor.submit(search)
    busy.release.set()
    assert_embeds(busy.future, busy.batch)
    with pytest.raises(InferenceFailedError) as caught:
        failed.result(timeout=30)
    message = str(caught.value)
    assert "RuntimeError" in message and "batch of 2 images" in message
    assert INJECTED_MESSAGE not in message and "/srv" not in message
    assert_embeds(after, search)
    # The executor keeps serving.
    later = images.make("L", 1)
    assert_embeds(executor.submit(later), later)
    # The failed enrollment's last image was never run: its request had already failed.
    assert images.schedule(session) == [["X"], ["E.0", "E.1"], ["S"], ["L"]]
    assert sample(metrics, "retrieval_batch_size_count") == 3  # executed batches only


def test_requests_dropped_before_inference_never_reach_the_model(
    make_executor: ExecutorFactory, session: GatedSession, metrics: ServiceMetrics
) -> None:
    executor = make_executor()
    images = Images()
    patient = AdmissionControl(capacity=8, timeout_s=60, metrics=metrics)
    hasty = AdmissionControl(capacity=8, timeout_s=0.05, metrics=metrics)
    busy = keep_busy(executor, session, images)
    with ExitStack() as stack:
        timed_out = stack.enter_context(hasty.admit())
        gone = stack.enter_context(patient.admit())
        kept = stack.enter_context(patient.admit())
        late = executor.submit(images.make("T", 1), ticket=timed_out)
        left = executor.submit(images.make("G", 1), priority=Priority.ENROLL, ticket=gone)
        kept_batch = images.make("K", 1)
        served = executor.submit(kept_batch, ticket=kept)
        gone.client_gone.set()
        time.sleep(0.1)  # past the hasty ticket's timeout
        busy.release.set()
        assert_embeds(busy.future, busy.batch)
        with pytest.raises(QueueTimeoutError, match="queue timeout"):
            late.result(timeout=30)
        with pytest.raises(ClientGoneError):
            left.result(timeout=30)
        assert_embeds(served, kept_batch)
    assert images.schedule(session) == [["X"], ["K"]]
    assert sample(metrics, "retrieval_admission_rejections_total", reason="queue_timeout") == 1
    assert sample(metrics, "retrieval_admission_rejections_total", reason="client_gone") == 1


def test_a_partial_batch_waits_only_while_an_announced_request_is_on_its_way(
    make_executor: ExecutorFactory, session: GatedSession
) -> None:
    executor = make_executor(max_batch=8, max_delay_s=60)
    images = Images()
    # Nobody else announced: a lone request runs at once, however long the allowed delay.
    alone = images.make("A", 1)
    assert_embeds(executor.submit(alone), alone)
    # B is being decoded: C's partial batch waits for it (up to the delay), then both run as one.
    with executor.announce() as coming:
        c_batch = images.make("C", 1)
        c = executor.submit(c_batch)
        time.sleep(0.2)
        assert not c.done()
        b_batch = images.make("B", 1)
        b = coming.submit(b_batch)
    assert_embeds(c, c_batch)
    assert_embeds(b, b_batch)
    # An announcement withdrawn (its decode failed) stops the wait as well.
    d_batch = images.make("D", 1)
    with executor.announce():
        d = executor.submit(d_batch)
        time.sleep(0.2)
        assert not d.done()
    assert_embeds(d, d_batch)
    assert images.schedule(session) == [["A"], ["C", "B"], ["D"]]


def test_close_fails_what_is_queued_and_later_submissions(
    make_executor: ExecutorFactory, session: GatedSession
) -> None:
    executor = make_executor()
    images = Images()
    busy = keep_busy(executor, session, images)
    queued = executor.submit(images.make("Q", 1))
    closer = threading.Thread(target=executor.close)
    closer.start()
    busy.release.set()
    closer.join(30)
    assert_embeds(busy.future, busy.batch)  # the running batch completes
    with pytest.raises(ExecutorClosedError):
        queued.result(timeout=30)
    with pytest.raises(ExecutorClosedError):
        executor.submit(images.make("Z", 1)).result(timeout=30)
    assert len(session.batches) == 1


def test_malformed_arrays_are_refused_at_submission(
    make_executor: ExecutorFactory, session: GatedSession
) -> None:
    executor = make_executor()
    with pytest.raises(ValueError, match="uint8"):
        executor.submit(np.zeros((1, 3, INPUT_SIDE, INPUT_SIDE), dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected"):
        executor.submit(np.zeros((1, 3, INPUT_SIDE, INPUT_SIDE + 1), dtype=np.uint8))
    empty = executor.submit(np.zeros((0, 3, INPUT_SIDE, INPUT_SIDE), dtype=np.uint8))
    assert empty.result(timeout=5).shape == (0, 32)
    assert session.batches == []


def test_background_work_waits_for_searches_and_enrollments_and_takes_its_share_only(
    make_executor: ExecutorFactory, session: GatedSession
) -> None:
    executor = make_executor(max_batch=2)
    assert (executor.background_share, executor.background_max_batch) == (0.25, 1)
    images = Images()
    busy = keep_busy(executor, session, images)
    submitted = [(busy.future, busy.batch)]
    for label, rows, priority in (
        ("B1", 1, Priority.BACKGROUND),
        ("E1", 2, Priority.ENROLL),
        ("S1", 1, Priority.SEARCH),
    ):
        batch = images.make(label, rows)
        submitted.append((executor.submit(batch, priority=priority), batch))
    # The next background batch (call 4: B2's first image) is held 0.2 s, as a slow model would.
    release = session.hold(4)
    busy.release.set()
    for future, batch in submitted:
        assert_embeds(future, batch)
    # Submitted first, embedded last: background work waits while anything else is queued.
    assert images.schedule(session) == [["X"], ["E1.0", "E1.1"], ["S1"], ["B1"]]

    b2 = images.make("B2", 2)
    b2_future = executor.submit(b2, priority=Priority.BACKGROUND)
    session.wait_for_calls(5)
    time.sleep(0.2)
    released = time.perf_counter()
    release.set()
    # A search submitted now is served at once, while the background work pauses ...
    s2 = images.make("S2", 1)
    assert_embeds(executor.submit(s2), s2)
    assert time.perf_counter() - released < 0.4
    # ... after a batch that took t >= 0.2 s, for t * (1 / 0.25 - 1) >= 0.6 s; one image each.
    session.wait_for_calls(7)
    assert time.perf_counter() - released >= 0.55
    assert_embeds(b2_future, b2)
    assert images.schedule(session)[4:] == [["B2.0"], ["S2"], ["B2.1"]]


def test_background_work_waits_while_the_executor_it_yields_to_has_a_search_in_hand(
    make_executor: ExecutorFactory, session: GatedSession
) -> None:
    # Two models' executors, as during a migration (one session here: the calls are counted).
    serving, migrating = make_executor(), make_executor()
    images = Images()
    busy = keep_busy(serving, session, images)  # a search in the serving model's call
    # Without yield_to the background work runs beside it ...
    b1 = images.make("B1", 1)
    assert_embeds(migrating.submit(b1, priority=Priority.BACKGROUND), b1)
    # ... with it, it waits until that call is done and nothing else is in hand.
    migrating.yield_to = serving
    b2 = images.make("B2", 1)
    waiting = migrating.submit(b2, priority=Priority.BACKGROUND)
    time.sleep(0.3)  # past B1's share pause (3 x a ~1 ms call)
    assert not waiting.done() and len(session.batches) == 2
    with serving.announce():  # a search being decoded counts as in hand too
        busy.release.set()
        assert_embeds(busy.future, busy.batch)
        time.sleep(0.1)
        assert not waiting.done()
    assert_embeds(waiting, b2)
    assert images.schedule(session) == [["X"], ["B1"], ["B2"]]
