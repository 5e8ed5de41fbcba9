"""A search or an enrollment from its bytes to its answer, driven from the event loop.

First a slot in the admission queue (or 503 at once). Then, with an inference executor: decode
in a worker thread, submit to the executor and wait for its future *on the event loop* (no
worker thread is held while a request waits for its batch, so the threads go on decoding the
next requests while the model runs), then the index work in a worker thread, or the store work
on the store's own lane (``app/store_lane.py``). Without
one (batching off): the whole request in one worker thread, the retriever calling the model
itself. While a request is queued its client is watched; one that disconnects is dropped before
inference (the executor, or the worker thread, reads the ticket).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive

from app.admission_control import AdmissionControl, AdmissionTicket
from app.inference_executor import InferenceExecutor, Priority
from app.retriever import EnrollResult, Retriever, SearchHit, Upload
from app.store_lane import StoreLane
from store.idempotency import IdempotencyClaim
from store.item_attributes import DEFAULT_MAX_ATTRIBUTES_BYTES, AttributeFilter, Attributes
from store.records import EnrollOutcome

T = TypeVar("T")


class RequestPipeline:
    def __init__(self, admission: AdmissionControl, store_lane: StoreLane) -> None:
        self.admission = admission
        self.store_lane = store_lane

    async def search(
        self,
        retriever: Retriever,
        uploads: Sequence[Upload],
        k: int,
        min_score: float | None,
        receive: Receive,
        weights: Sequence[float] | None = None,
        where: AttributeFilter | None = None,
    ) -> list[SearchHit]:
        """A query of one or more photos (a set query), embedded as one batch at search
        priority."""
        with self.admission.admit() as ticket:
            executor = retriever.executor
            if executor is None:
                work = run_in_threadpool(
                    retriever.search_set, uploads, k, min_score, weights, ticket, where
                )
                return await _unless_client_leaves(work, ticket, receive)
            batches: list[npt.NDArray[np.uint8]] = []

            def decode() -> npt.NDArray[np.uint8]:
                # Kept for the degenerate-query test, which looks at the model input.
                batches.append(retriever.decode_query(uploads, ticket))
                return batches[-1]

            embeddings = await _unless_client_leaves(
                _embedded(executor, Priority.SEARCH, ticket, decode), ticket, receive
            )
        return await run_in_threadpool(
            retriever.search_by_embedding, embeddings, k, min_score, weights, where, batches[0]
        )

    async def enroll(
        self,
        retriever: Retriever,
        item_id: str,
        uploads: Sequence[Upload],
        receive: Receive,
        idempotency: IdempotencyClaim[EnrollOutcome] | None = None,
        attributes_patch: Attributes | None = None,
        max_attributes_bytes: int = DEFAULT_MAX_ATTRIBUTES_BYTES,
    ) -> EnrollResult:
        with self.admission.admit() as ticket:
            executor = retriever.executor
            if executor is None:
                work = run_in_threadpool(
                    retriever.enroll,
                    item_id,
                    uploads,
                    ticket,
                    idempotency,
                    attributes_patch,
                    max_attributes_bytes,
                )
                return await _unless_client_leaves(work, ticket, receive)
            decode = partial(retriever.decode_enrollment, uploads, ticket)
            embeddings = await _unless_client_leaves(
                _embedded(executor, Priority.ENROLL, ticket, decode), ticket, receive
            )
        # The store write on the store's own threads: a stalled store cannot take the worker
        # threads that decode the next searches.
        return await self.store_lane.run_write(
            item_id,
            retriever.reconciler.mark,
            retriever.commit_enrollment,
            item_id,
            uploads,
            embeddings,
            idempotency,
            attributes_patch,
            max_attributes_bytes,
        )


async def _embedded(
    executor: InferenceExecutor,
    priority: Priority,
    ticket: AdmissionTicket,
    decode: Callable[[], npt.NDArray[np.uint8]],
) -> npt.NDArray[np.float32]:
    """``decode()`` in a worker thread (announced: a partial batch may wait for it), then the
    executor's ``(N, D)`` float32 embeddings of its ``(N, 3, H, W)`` uint8 batch."""
    with executor.announce() as announcement:
        batch = await run_in_threadpool(decode)
        future = announcement.submit(batch, priority=priority, ticket=ticket)
    return await asyncio.wrap_future(future)


async def _unless_client_leaves(work: Awaitable[T], ticket: AdmissionTicket, receive: Receive) -> T:
    """``await work``, flagging the ticket if the client disconnects meanwhile.

    The work is still awaited to its end: a request not yet in a batch then fails with
    ClientGoneError (and is counted); one already running finishes for nobody.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            ticket.client_gone.set()
        return await task
    finally:
        gone.cancel()


async def _disconnected(receive: Receive) -> None:
    # The body has been read: the server's next message is the disconnect, whenever it comes.
    while (await receive())["type"] != "http.disconnect":
        pass
