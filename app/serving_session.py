"""A model's ONNX Runtime session as this process runs it: the serving model's, and a
migration's target model's beside it.

Batching on, the executor's thread is the session's only caller and the worker threads decode
images on the same cores meanwhile, so ORT's intra-op threads do not spin waiting for the next
call (measured: about +30 % searches/s decoding 1 MP JPEGs on 2 cores). Off, the session is as
released. A migration's target model gets the same options: it re-embeds one image at a time
beside the searches, and a session spinning after each of those calls took the cores from them.
"""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from artifact.onnx_embedder import OnnxEmbedder


def load_embedder(settings: Settings, path: Path | None = None) -> OnnxEmbedder:
    """The session of ``path`` (default: the configured model) with the service's options."""
    return OnnxEmbedder(
        settings.model_path if path is None else path,
        allow_gpu=settings.allow_gpu,
        intra_op_threads=settings.inference_threads,
        max_batch=settings.inference_batch,
        allow_spinning=not settings.batching,
    )
