"""Errors raised by stores; the service maps each to an HTTP status."""

from __future__ import annotations

from store.records import ModelIdentity


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached or is locked; retrying later may succeed (HTTP 503)."""

    # What a client is told instead of the message, which names the database file or the
    # Redis host and port (the service logs it).
    public_detail = "the store is unreachable or refused the operation; see the service log"


class ItemNotFoundError(StoreError, KeyError):
    """No item with that id."""


class ImageNotFoundError(StoreError, KeyError):
    """The item exists but holds no image with that id."""


class ModelMismatchError(StoreError):
    """The store holds embeddings of another model than the configured one."""

    def __init__(self, stored: ModelIdentity, configured: ModelIdentity) -> None:
        super().__init__(
            f"the store holds embeddings of {stored.describe()}, but the configured model is "
            f"{configured.describe()}; re-embed the store or point the service at another one"
        )
        self.stored = stored
        self.configured = configured
