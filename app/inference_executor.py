"""The inference executor: one thread that owns a model's calls and batches requests across them.

Requests are decoded in the worker threads, then submit their preprocessed ``(N, 3, H, W)``
``uint8`` arrays here from any thread and get a future of their ``(N, D)`` ``float32``
embeddings, rows in submission order. The executor's thread is the model's only caller (the
way Triton's dynamic batcher works, in-process): it gathers pending requests into one batch of
at most ``max_batch`` images, runs one model call, and splits the output back per request. So
the cores go to one well-fed model call at a time instead of to many small calls fighting over
them, and a GPU gets batches instead of single images.

Scheduling, decided at each batch:

* **Partial batches wait briefly, and only for someone.** A batch that is not full waits for
  more requests, at most ``max_delay_s`` after its oldest request was submitted, and only while
  an announced request (one being decoded right now, see :meth:`InferenceExecutor.announce`)
  is on its way. A lone request never waits, and under load the batch fills while the
  previous one runs.
* **Searches first, enrollments in sub-batches.** A batch holds searches only or enrollment
  images only. Enrollments are cut into sub-batches of at most ``max_batch`` images (one
  request may span several batches, and one batch several requests). When both kinds are
  waiting the kinds alternate, so a queued search never waits behind more than one enrollment
  sub-batch, and enrollments still advance under a steady stream of searches.
* **Background work yields and is capped.** A ``BACKGROUND`` request (a model migration's
  re-embedding) is batched only when no search or enrollment is queued, at most
  ``background_max_batch`` images at a time (a search arriving meanwhile waits for that batch
  only), and after each of its batches, taking ``t`` seconds, none other is started for
  ``t * (1 / background_share - 1)``: it takes at most that share of the model's time, and
  whoever times it (the ETA) can count on it. During a model migration two executors share
  the cores, and the searches go to the serving model's: the other's background work then also
  waits while that one has a search or enrollment queued, being decoded or running
  (``yield_to``), so the re-embedding's inference does not run beside theirs.
* **Dropped before inference.** A request whose client has gone, or that waited past its
  queue timeout (its :class:`~app.admission_control.AdmissionTicket`), is dropped when a batch
  would take it; its future raises the reason. An enrollment already partly embedded is
  finished.
* **A failing model call fails that batch only.** Its requests' futures raise
  :class:`~app.retriever_errors.InferenceFailedError` (saying what failed, without the
  underlying message, which can hold file paths); the thread goes on with the next batch.

Nothing here is CPU-specific: the executor calls ``embedder.embed``, whichever execution
provider its session runs on. One executor per loaded model (a migration between two models
runs two), no globals.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.admission_control import AdmissionTicket
from app.metrics import ServiceMetrics
from app.retriever_errors import ExecutorClosedError, InferenceFailedError, RequestDroppedError
from artifact.preprocess_spec import PreprocessSpec

log = logging.getLogger(__name__)


# Images per background batch: a search that arrives while one runs waits for it, so at most one
# image's inference. Measured with the default model on the 2 shared cores (load average 8-10
# from other work, so only roughly): closed-loop search p99 went from 139 to 248 ms during an
# in-service re-embed at 25 % with batches of an item's 5 images, and from 107 to 204 ms with 1
# (the re-embed's decoding and store writes share the cores too); no search failed.
BACKGROUND_MAX_BATCH = 1
# How often background work that yields to another executor looks again whether that one has
# gone idle: it cannot wait on the other's condition (the two locks are never held together).
YIELD_POLL_S = 0.002


class Priority(enum.Enum):
    SEARCH = "search"
    ENROLL = "enroll"
    # A model migration's re-embedding: only when no search or enrollment waits, and at most
    # ``background_share`` of the model's time.
    BACKGROUND = "background"


class BatchEmbedder(Protocol):
    """What the executor runs: :class:`~artifact.onnx_embedder.OnnxEmbedder` is one."""

    spec: PreprocessSpec

    def embed(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]: ...


@dataclass(eq=False)
class _Request:
    batch: npt.NDArray[np.uint8]  # (N, 3, H, W)
    priority: Priority
    ticket: AdmissionTicket | None
    future: Future[npt.NDArray[np.float32]]
    submitted_at: float  # time.perf_counter()
    taken: int = 0  # rows handed to batches so far
    done: int = 0  # rows embedded so far
    outputs: list[npt.NDArray[np.float32]] = field(default_factory=list)
    inference_s: float = 0.0

    @property
    def rows(self) -> int:
        return int(self.batch.shape[0])


@dataclass(frozen=True)
class _Part:
    """Rows ``start:stop`` of one request, in one batch."""

    request: _Request
    start: int
    stop: int


class Announcement:
    """A request that will submit soon (it is being decoded): partial batches may wait for it.

    Use as a context manager; leaving it without :meth:`submit` (the decode failed) withdraws
    the announcement.
    """

    def __init__(self, executor: InferenceExecutor) -> None:
        self._executor = executor
        self._open = True

    def submit(
        self,
        batch: npt.NDArray[np.uint8],
        *,
        priority: Priority = Priority.SEARCH,
        ticket: AdmissionTicket | None = None,
    ) -> Future[npt.NDArray[np.float32]]:
        if not self._open:
            raise RuntimeError("this announcement has already been used")
        future = self._executor._submit(batch, priority, ticket, announced=True)
        self._open = False
        return future

    def __enter__(self) -> Announcement:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._open:
            self._open = False
            self._executor._withdraw()


class InferenceExecutor:
    def __init__(
        self,
        embedder: BatchEmbedder,
        *,
        max_batch: int,
        max_delay_s: float,
        metrics: ServiceMetrics,
        name: str = "inference-executor",
        background_share: float = 0.25,
        background_max_batch: int = BACKGROUND_MAX_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must not be negative, got {max_delay_s}")
        if not 0 < background_share <= 1:
            raise ValueError(f"background_share must be in (0, 1], got {background_share}")
        self.background_share = background_share
        self.background_max_batch = min(max_batch, background_max_batch)
        self._background_ready_at = 0.0  # time.perf_counter() before which none is started
        # Another model's executor whose searches and enrollments this one's background work
        # waits for (set by the migration follower while two models are loaded).
        self.yield_to: InferenceExecutor | None = None
        self._foreground_running = False
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._metrics = metrics
        spec = embedder.spec
        self._input_shape = (3, spec.height, spec.width)
        self._dim = spec.embedding_dim
        self._cond = threading.Condition()
        self._queues: dict[Priority, deque[_Request]] = {p: deque() for p in Priority}
        self._queued_rows = 0  # rows of queued requests not yet handed to a batch
        self._announced = 0
        self._last_kind: Priority | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    # -- callers' side (any thread) ---------------------------------------------------------

    def submit(
        self,
        batch: npt.NDArray[np.uint8],
        *,
        priority: Priority = Priority.SEARCH,
        ticket: AdmissionTicket | None = None,
    ) -> Future[npt.NDArray[np.float32]]:
        """Queue ``(N, 3, H, W)`` uint8; the future holds its ``(N, D)`` float32 embeddings."""
        return self._submit(batch, priority, ticket, announced=False)

    def announce(self) -> Announcement:
        """Say a request is on its way (decoding); submit through the returned announcement."""
        with self._cond:
            self._announced += 1
        return Announcement(self)

    @property
    def pending(self) -> int:
        """Requests queued and not yet wholly handed to a batch."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    @property
    def foreground_busy(self) -> bool:
        """A search or enrollment is queued, announced (being decoded) or in a model call. Read
        by another executor's thread without this one's lock: a hint, which may be one batch
        late."""
        return (
            self._foreground_running
            or self._announced > 0
            or bool(self._queues[Priority.SEARCH])
            or bool(self._queues[Priority.ENROLL])
        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the running batch; queued requests fail with ExecutorClosedError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _submit(
        self,
        batch: npt.NDArray[np.uint8],
        priority: Priority,
        ticket: AdmissionTicket | None,
        *,
        announced: bool,
    ) -> Future[npt.NDArray[np.float32]]:
        # Checked here, not in the batch: one malformed array would fail everyone batched with it.
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[1:] != self._input_shape:
            raise ValueError(
                f"expected (N, {', '.join(map(str, self._input_shape))}) uint8, "
                f"got {batch.shape} {batch.dtype}"
            )
        future: Future[npt.NDArray[np.float32]] = Future()
        request = _Request(batch, priority, ticket, future, time.perf_counter())
        with self._cond:
            if announced:
                self._announced -= 1
            if self._closed:
                future.set_exception(ExecutorClosedError("the inference executor is shut down"))
                return future
            if request.rows == 0:
                future.set_result(np.zeros((0, self._dim), dtype=np.float32))
                return future
            self._queues[priority].append(request)
            self._queued_rows += request.rows
            self._publish_pending()
            self._cond.notify_all()
        return future

    def _withdraw(self) -> None:
        with self._cond:
            self._announced -= 1
            self._cond.notify_all()

    # -- the executor's thread --------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            parts, dropped = self._next_batch()
            for request, error in dropped:
                _fail(request, error)
            if parts is None:
                break
            if parts:
                try:
                    self._run(parts)
                except Exception as exc:  # pragma: no cover - _run fails its requests itself
                    # Whatever went wrong, this thread must live on: it is the model's only caller.
                    log.exception("inference executor: unexpected error around a batch")
                    requests = list(dict.fromkeys(p.request for p in parts))
                    self._abandon(requests)
                    rows = sum(p.stop - p.start for p in parts)
                    for request in requests:
                        _fail(request, InferenceFailedError.of_batch(exc, rows))
                finally:
                    self._foreground_running = False
        with self._cond:
            left = [r for q in self._queues.values() for r in q]
            for q in self._queues.values():
                q.clear()
            self._queued_rows = 0
            self._publish_pending()
        for request in left:
            _fail(request, ExecutorClosedError("the service is shutting down"))

    def _next_batch(self) -> tuple[list[_Part] | None, list[tuple[_Request, Exception]]]:
        """The next batch's parts (None once closed), and the requests dropped on the way."""
        with self._cond:
            while not self._closed:
                if self._foreground_rows():
                    break
                if self._queues[Priority.BACKGROUND]:
                    pause = self._background_ready_at - time.perf_counter()
                    if pause <= 0:
                        other = self.yield_to
                        if other is None or not other.foreground_busy:
                            break
                        pause = YIELD_POLL_S
                    self._cond.wait(pause)
                else:
                    self._cond.wait()
            if self._closed:
                return None, []
            self._wait_for_more()
            if self._closed:
                return None, []
            return self._take()

    def _wait_for_more(self) -> None:
        # Measured from the oldest request: one that already waited while the previous batch
        # ran does not wait again.
        oldest = min(q[0].submitted_at for q in self._queues.values() if q)
        deadline = oldest + self.max_delay_s
        while self._announced > 0 and self._queued_rows < self.max_batch and not self._closed:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _foreground_rows(self) -> int:
        return sum(
            r.rows - r.taken for p in (Priority.SEARCH, Priority.ENROLL) for r in self._queues[p]
        )

    def _take(self) -> tuple[list[_Part], list[tuple[_Request, Exception]]]:
        searches, enrollments = self._queues[Priority.SEARCH], self._queues[Priority.ENROLL]
        alternate = self._last_kind is Priority.SEARCH or not searches
        kind = Priority.ENROLL if enrollments and alternate else Priority.SEARCH
        if not searches and not enrollments:
            kind = Priority.BACKGROUND
        queue = self._queues[kind]
        parts: list[_Part] = []
        dropped: list[tuple[_Request, Exception]] = []
        # A running batch is never interrupted: background batches are kept short, so a search
        # arriving during one waits at most that long.
        room = self.max_batch if kind is not Priority.BACKGROUND else self.background_max_batch
        now = time.monotonic()
        while queue and room > 0:
            request = queue[0]
            if request.taken == 0 and request.ticket is not None:
                try:
                    request.ticket.check(now)
                except RequestDroppedError as exc:
                    queue.popleft()
                    self._queued_rows -= request.rows
                    dropped.append((request, exc))
                    continue
            n = min(request.rows - request.taken, room)
            parts.append(_Part(request, request.taken, request.taken + n))
            request.taken += n
            room -= n
            self._queued_rows -= n
            if request.taken == request.rows:
                queue.popleft()
        if parts:
            self._last_kind = kind
            # Set before the lock is let go: no instant between the take and the model call in
            # which another executor's background work sees this one idle.
            self._foreground_running = kind is not Priority.BACKGROUND
        self._publish_pending()
        return parts, dropped

    def _run(self, parts: list[_Part]) -> None:
        requests = list(dict.fromkeys(p.request for p in parts))
        rows = sum(p.stop - p.start for p in parts)
        start = time.perf_counter()
        for part in parts:
            if part.start == 0:
                self._metrics.batch_queue_wait_seconds.observe(start - part.request.submitted_at)
        try:
            if len(parts) == 1:
                batch = parts[0].request.batch[parts[0].start : parts[0].stop]
            else:
                batch = np.concatenate([p.request.batch[p.start : p.stop] for p in parts])
            out = self.embedder.embed(np.ascontiguousarray(batch))
            if out.shape != (rows, self._dim):
                raise ValueError(f"the model returned {out.shape} for {rows} images")
        except Exception as exc:
            log.error(
                "inference failed on a batch of %d images (%d requests)",
                rows,
                len(requests),
                exc_info=exc,
            )
            self._abandon(requests)
            error = InferenceFailedError.of_batch(exc, rows)
            for request in requests:
                _fail(request, error)
            return
        elapsed = time.perf_counter() - start
        if parts[0].request.priority is Priority.BACKGROUND:
            with self._cond:
                pause = elapsed * (1 / self.background_share - 1)
                self._background_ready_at = time.perf_counter() + pause
        self._metrics.batch_size.observe(rows)
        self._metrics.batch_inference_seconds.observe(elapsed)
        offset = 0
        for part in parts:
            request, n = part.request, part.stop - part.start
            request.outputs.append(out[offset : offset + n].copy())
            offset += n
            request.done += n
            request.inference_s += elapsed
            if request.done == request.rows:
                outputs = request.outputs
                result = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
                self._metrics.observe_stage("inference", request.inference_s)
                _resolve(request, result)

    def _abandon(self, requests: list[_Request]) -> None:
        """Take failed requests' rows not yet batched (a split enrollment) out of the queue."""
        with self._cond:
            for request in requests:
                queue = self._queues[request.priority]
                if request in queue:
                    queue.remove(request)
                    self._queued_rows -= request.rows - request.taken
            self._publish_pending()

    def _publish_pending(self) -> None:
        self._metrics.inference_pending.set(sum(len(q) for q in self._queues.values()))


def _resolve(request: _Request, result: npt.NDArray[np.float32]) -> None:
    with suppress(InvalidStateError):  # nobody cancels these futures; never fail the thread
        request.future.set_result(result)


def _fail(request: _Request, error: Exception) -> None:
    with suppress(InvalidStateError):
        request.future.set_exception(error)
