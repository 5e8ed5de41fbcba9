"""Errors of the service layer (the store's and the decoder's live beside them)."""

from __future__ import annotations


class NotReadyError(RuntimeError):
    """The model is not loaded or the index is not rebuilt yet (or start-up failed)."""


class UnsupportedMediaTypeError(ValueError):
    """The request body is not ``multipart/form-data``."""


class TooManyImagesError(ValueError):
    """More files in one enrollment than the configured limit."""


class InvalidCursorError(ValueError):
    """A listing cursor that this service did not issue."""


class QueueFullError(RuntimeError):
    """The admission queue in front of inference is full: 503 at once, retry later."""


class RequestDroppedError(RuntimeError):
    """A request dropped while it waited for inference, before any model time was spent on it."""


class QueueTimeoutError(RequestDroppedError):
    """Waited for inference longer than the queue timeout: 503, retry later."""


class ClientGoneError(RequestDroppedError):
    """The client disconnected while its request waited: nobody is left to answer."""


class InferenceFailedError(RuntimeError):
    """The model call of the batch holding this request raised; other batches are unaffected."""

    @classmethod
    def of_batch(cls, cause: BaseException, images: int) -> InferenceFailedError:
        # The cause's type only: ONNX Runtime's messages can name files and nodes of the server.
        return cls(
            f"model inference failed ({type(cause).__name__}) on the batch of {images} images "
            "holding this request; other requests are unaffected, this one may be retried"
        )


class ExecutorClosedError(NotReadyError):
    """The inference executor is shutting down (503, like any not-ready service)."""


class InvalidPositionError(ValueError):
    """An ``after=`` value that is not a write's position token (HTTP 422)."""


class PositionNotAppliedError(RuntimeError):
    """This replica has not applied the awaited write yet (HTTP 503, ``Retry-After: 1``)."""
