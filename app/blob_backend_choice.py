"""The blob backend the settings name, built in one place for the service and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import SecretStr

from app.settings import BlobBackendKind, Settings
from store.blob_backend import BlobBackend
from store.directory_blob_store import DirectoryBlobStore
from store.s3_blob_store import S3BlobStore


def _directory(settings: Settings) -> BlobBackend:
    return DirectoryBlobStore(settings.blob_dir)


def _s3(settings: Settings) -> BlobBackend:
    # The settings' validator guarantees both for blob_backend=s3.
    assert settings.s3_endpoint is not None and settings.s3_bucket is not None
    return S3BlobStore(
        settings.s3_endpoint,
        settings.s3_bucket,
        prefix=settings.s3_prefix,
        region=settings.s3_region,
        access_key=_secret(settings.s3_access_key),
        secret_key=_secret(settings.s3_secret_key),
        timeout_s=settings.s3_timeout_s,
    )


BUILDERS: Mapping[BlobBackendKind, Callable[[Settings], BlobBackend]] = {
    "directory": _directory,
    "s3": _s3,
}


def build_blob_backend(settings: Settings) -> BlobBackend | None:
    """The configured backend, or None when originals are not kept (``keep_blobs`` off)."""
    return BUILDERS[settings.blob_backend](settings) if settings.keep_blobs else None


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()
