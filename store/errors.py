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


class StoreOutcomeUnknownError(StoreUnavailableError):
    """The write was sent to the store but its answer never came (connection lost after the
    commit was sent, a timeout): it may or may not be committed (HTTP 503).

    Redis raises it when the connection fails once ``EXEC`` may have gone out; SQLite when
    ``COMMIT`` fails and leaves no transaction open (an I/O error while syncing the journal, where
    recovery decides whether the frames count). Whoever keeps a copy of the store's state (the
    index) must read the item again rather than assume either outcome.
    """

    public_detail = (
        "the store did not confirm this write (the connection was lost or the write's deadline "
        "passed after the commit was sent): its outcome is unknown, it may or may not have "
        "been applied. Retrying the same request is safe: with the same Idempotency-Key it "
        "returns the first answer if that write was applied; without one, enrolling the same "
        "bytes again adds nothing twice and deleting again answers 404 if the first delete was "
        "applied"
    )


class ItemNotFoundError(StoreError, KeyError):
    """No item with that id."""


class ImageNotFoundError(StoreError, KeyError):
    """The item exists but holds no image with that id."""


class LastCountedImageError(StoreError, ValueError):
    """Quarantining this image would leave its item with no image in its sums (HTTP 409)."""


class AttributesError(StoreError, ValueError):
    """An item's attributes were refused: nothing was written (HTTP 422)."""


class AttributesInvalidError(AttributesError):
    """A patch is not a JSON object, or holds a value JSON cannot carry (NaN, a non-string
    key, a set, ...)."""


class AttributesTooLargeError(AttributesError):
    """The attributes after the merge would exceed the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the item's attributes would take {size} bytes as compact JSON; the limit is {limit}"
        )
        self.size = size
        self.limit = limit


class AttributeFilterError(ValueError):
    """A ``key:value`` filter is malformed (HTTP 422)."""


class ModelMismatchError(StoreError):
    """The store holds embeddings of another model than the configured one."""

    def __init__(self, stored: ModelIdentity, configured: ModelIdentity) -> None:
        super().__init__(
            f"{self.describe(stored, configured)}; re-embed the store (`centroid-retrieval "
            "migrate --model NEW.onnx`) or point the service at another one"
        )
        self.stored = stored
        self.configured = configured

    @staticmethod
    def describe(stored: ModelIdentity, configured: ModelIdentity) -> str:
        return (
            f"the store holds embeddings of {stored.describe()}, but the configured model is "
            f"{configured.describe()}"
        )

    @property
    def stored_text(self) -> str:
        return self.describe(self.stored, self.configured)
