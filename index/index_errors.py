"""Errors an index backend raises when it cannot answer, whatever the backend's own exceptions."""

from __future__ import annotations


class IndexUnavailableError(RuntimeError):
    """The index's backing service (e.g. Milvus) could not be reached or refused the call.

    Nothing is known about whether a write that raised this was applied; the caller retries or
    repairs from the store (the source of truth). The app maps it to 503.
    """
