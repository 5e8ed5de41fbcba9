"""What the app holds between requests: settings, metrics and a retriever once it is ready.

Loading the model and rebuilding the index can take a while on a large store, so it runs in a
background thread started by the lifespan: ``/healthz`` answers at once, ``/readyz`` stays 503
(with the reason) until the retriever is ready, and forever if start-up failed (e.g. the store
holds embeddings of another model).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from app.metrics import ServiceMetrics
from app.retriever import Retriever
from app.retriever_errors import NotReadyError
from app.settings import Settings
from index.blob_store import BlobStore
from index.flat_centroid_index import FlatCentroidIndex
from index.gpu_search_mirror import GpuSearchMirror, gpu_available
from index.store.sqlite_store import SqliteStore
from index.store.store import Store
from model.artifact.onnx_embedder import OnnxEmbedder

log = logging.getLogger(__name__)


def open_store(settings: Settings) -> Store:
    """Redis when a URL is configured, the embedded SQLite store otherwise."""
    if settings.redis_url:
        from index.store.redis_store import RedisStore

        return RedisStore(settings.redis_url, namespace=settings.redis_namespace)
    return SqliteStore(settings.sqlite_path)


def build_retriever(settings: Settings, metrics: ServiceMetrics) -> Retriever:
    embedder = OnnxEmbedder(
        settings.model_path,
        allow_gpu=settings.allow_gpu,
        intra_op_threads=settings.inference_threads,
        max_batch=settings.inference_batch,
    )
    store = open_store(settings)
    blobs = BlobStore(settings.blob_dir) if settings.keep_blobs else None
    index = FlatCentroidIndex(embedder.embedding_dim)
    # faiss-gpu (requirements/serve-gpu.txt) on a GPU machine: the CPU index takes the writes,
    # a GPU copy kept in step serves searches. Never the case with faiss-cpu.
    mirror = GpuSearchMirror(index) if settings.allow_gpu and gpu_available() else None
    return Retriever(
        embedder=embedder,
        store=store,
        index=index,
        gpu_mirror=mirror,
        blobs=blobs,
        metrics=metrics,
        max_image_pixels=settings.max_image_pixels,
        max_images_per_request=settings.max_images_per_request,
    )


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    retriever: Retriever | None = None
    failure: str | None = None
    phase: str = "starting"
    _thread: threading.Thread | None = None

    def start_loading(self) -> None:
        self._thread = threading.Thread(target=self._load, name="retriever-loader", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            self.phase = "loading model"
            retriever = build_retriever(self.settings, self.metrics)
            self.phase = "rebuilding index"
            items = retriever.rebuild_index()
        except Exception as exc:
            log.exception("start-up failed")
            self.failure = f"{type(exc).__name__}: {exc}"
            self.phase = "failed"
            return
        self.retriever = retriever
        self.phase = "ready"
        log.info(
            "ready: model %s v%s on %s, %d items, in %.1f s",
            retriever.identity.name,
            retriever.identity.version,
            retriever.embedder.device,
            items,
            time.perf_counter() - start,
        )

    def require_retriever(self) -> Retriever:
        if self.retriever is None:
            reason = self.failure or f"still {self.phase}"
            raise NotReadyError(f"service not ready: {reason}")
        return self.retriever

    def close(self) -> None:
        if self.retriever is not None:
            self.retriever.store.close()
