"""The centroid index the service runs, as ``RETRIEVAL_INDEX`` chooses, and what ``/info`` says
of it.

Each kind is one small constructor and one description of its parameters in ``KINDS``:

* ``flat``: ``FlatCentroidIndex``, exact (the default). The only kind the GPU search mirror
  (faiss-gpu) copies; ``ivf`` and ``milvus`` search on their own.
* ``ivf``: ``IvfCentroidIndex`` with the ``RETRIEVAL_IVF_*`` knobs (the defaults are the
  class's, which ``bench/approximate_index.py`` measured), exact below its training threshold.
* ``milvus``: ``MilvusCentroidIndex`` on ``RETRIEVAL_MILVUS_URI`` (a server, or a Milvus Lite
  ``.db`` file: one process per file). The store stays the source of truth: start-up rebuilds
  the collection from it.

The Milvus token and URI are never part of the description (``/info`` does not say how the
servers are laid out; ``app/error_redaction.py`` keeps both out of error texts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.settings import IndexKind, Settings
from index.centroid_index import CentroidIndex
from index.flat_centroid_index import FlatCentroidIndex
from index.index_errors import IndexUnavailableError
from index.ivf_centroid_index import IvfCentroidIndex
from index.milvus_centroid_index import MilvusCentroidIndex

if TYPE_CHECKING:
    from pymilvus import MilvusClient


@dataclass(frozen=True)
class IndexKindSpec:
    build: Callable[[Settings, int], CentroidIndex]  # (settings, embedding dim) -> empty index
    parameters: Callable[[Settings], dict[str, Any]]  # for /info: nothing secret


def build_centroid_index(settings: Settings, dim: int) -> CentroidIndex:
    """The configured index for ``dim``-dimensional embeddings, empty (start-up fills it)."""
    return KINDS[settings.index].build(settings, dim)


def describe_index(settings: Settings) -> dict[str, Any]:
    """``{"kind": ..., <its parameters>}`` for ``/info``; never the Milvus token or URI."""
    return {"kind": settings.index, **KINDS[settings.index].parameters(settings)}


def _flat(settings: Settings, dim: int) -> CentroidIndex:
    return FlatCentroidIndex(dim)


def _ivf(settings: Settings, dim: int) -> CentroidIndex:
    return IvfCentroidIndex(
        dim,
        nprobe=settings.ivf_nprobe,
        refine=settings.ivf_refine,
        min_train_items=settings.ivf_min_train_items,
        retrain_growth=settings.ivf_retrain_growth,
        codes=settings.ivf_codes,
    )


def _ivf_parameters(settings: Settings) -> dict[str, Any]:
    return {
        "nprobe": settings.ivf_nprobe,
        "refine": settings.ivf_refine,
        "min_train_items": settings.ivf_min_train_items,
        "retrain_growth": settings.ivf_retrain_growth,
        "codes": settings.ivf_codes,
        "recall_sample_rate": settings.recall_sample_rate,
    }


def _milvus(settings: Settings, dim: int) -> CentroidIndex:
    return MilvusCentroidIndex(
        _milvus_client(settings),
        settings.milvus_collection_name,
        dim,
        timeout=settings.milvus_timeout_s,
        admin_timeout=settings.milvus_admin_timeout_s,
    )


def _milvus_client(settings: Settings) -> MilvusClient:
    """A client on ``milvus_uri`` with the token; built here because the index's own
    connect takes no token. Imported only for this kind.

    Made with the request-path timeout: pymilvus bounds both this first connection and every
    reconnect it makes inside a later call (a search that met a restarted Milvus) by it, and a
    request must not wait for a long one. A Milvus not up yet at start-up is retried by the
    loader (``app/service_state.py``), not waited for here."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    if settings.milvus_uri is None:  # Settings refuses index=milvus without one
        raise ValueError("index=milvus needs milvus_uri")
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    try:
        return MilvusClient(uri=settings.milvus_uri, token=token, timeout=settings.milvus_timeout_s)
    except (MilvusException, ConnectionError) as exc:
        # The index's own error type, so a Milvus that is not up yet reads the same at
        # start-up as later.
        raise IndexUnavailableError(f"Milvus ({settings.milvus_collection_name}): {exc}") from exc


def _milvus_parameters(settings: Settings) -> dict[str, Any]:
    uri = settings.milvus_uri or ""
    return {
        "collection": settings.milvus_collection_name,
        "lite": uri.endswith(".db"),
        "timeout_s": settings.milvus_timeout_s,
        "admin_timeout_s": settings.milvus_admin_timeout_s,
    }


KINDS: Mapping[IndexKind, IndexKindSpec] = {
    "flat": IndexKindSpec(_flat, lambda settings: {}),
    "ivf": IndexKindSpec(_ivf, _ivf_parameters),
    "milvus": IndexKindSpec(_milvus, _milvus_parameters),
}
