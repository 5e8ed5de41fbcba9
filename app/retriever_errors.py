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
