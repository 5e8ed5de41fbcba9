"""RETRIEVAL_BLOB_BACKEND and RETRIEVAL_S3_*: the backend the settings name, refused when
incomplete, and the S3 keys kept out of reprs, /info-style dumps and error texts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.blob_backend_choice import BUILDERS, build_blob_backend
from app.error_redaction import Redactor
from app.settings import Settings
from store.directory_blob_store import DirectoryBlobStore
from store.s3_blob_store import S3BlobStore

ACCESS = "AKIAEXAMPLEACCESS"
SECRET = "wJalrXUtnFEMI-example-secret"


def s3_settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        blob_backend="s3",
        s3_endpoint="http://minio.internal:9000",
        s3_bucket="originals",
        s3_prefix="blobs/",
        s3_access_key=ACCESS,
        s3_secret_key=SECRET,
        s3_timeout_s=2.5,
        **extra,  # type: ignore[arg-type]
    )


def test_every_kind_has_a_builder() -> None:
    kinds = Settings.model_fields["blob_backend"].annotation
    assert set(BUILDERS) == set(kinds.__args__)  # type: ignore[union-attr]


def test_the_default_is_the_data_directory(tmp_path: Path) -> None:
    blobs = build_blob_backend(Settings(data_dir=tmp_path / "data"))
    assert isinstance(blobs, DirectoryBlobStore) and blobs.root == tmp_path / "data" / "blobs"
    assert build_blob_backend(Settings(data_dir=tmp_path, keep_blobs=False)) is None


def test_s3_is_built_from_its_settings_without_calling_it(tmp_path: Path) -> None:
    # Nothing listens at that endpoint: building sends nothing (start-up does not wait on it).
    blobs = build_blob_backend(s3_settings(tmp_path))
    assert isinstance(blobs, S3BlobStore)
    assert (blobs.bucket, blobs.prefix, blobs.timeout_s) == ("originals", "blobs/", 2.5)
    assert blobs.key_for("0" * 64) == "blobs/" + "0" * 64


def test_s3_without_an_endpoint_or_a_bucket_is_refused() -> None:
    with pytest.raises(ValidationError, match="RETRIEVAL_S3_ENDPOINT"):
        Settings(blob_backend="s3", s3_bucket="b")
    with pytest.raises(ValidationError, match="RETRIEVAL_S3_BUCKET"):
        Settings(blob_backend="s3", s3_endpoint="http://minio:9000", s3_bucket="")
    with pytest.raises(ValidationError):
        Settings(blob_backend="nfs")


def test_the_keys_never_show(tmp_path: Path) -> None:
    settings = s3_settings(tmp_path)
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert ACCESS not in shown and SECRET not in shown
    redact = Redactor(settings)
    leaked = f"SignatureDoesNotMatch for {ACCESS}/{SECRET} at http://minio.internal:9000/x"
    cleaned = redact(leaked)
    assert ACCESS not in cleaned and SECRET not in cleaned and "minio.internal" not in cleaned
