"""A model migration's pieces the command and the service share: the record in the original
store, the installed model file, the shadow store, and embedding originals with a model.

See ``store/migration_record.py`` for the record and the shadow's naming, and
``app/reembed_job.py`` for the re-embedding.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.reembed_job import EmbedOriginals, UnreadableImagesError, decode_failures
from app.serving_session import load_embedder
from app.settings import Settings
from app.store_choice import open_store
from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from store.hash_references import AnyOf, HashReferences
from store.migration_record import MigrationRecord
from store.records import ModelIdentity
from store.store import Store
from store.store_meta import MIGRATION_KEY

# What a user runs to move a data directory to the configured model: named in the start-up
# error and /info while the store holds another model's embeddings.
MIGRATE_COMMAND = "centroid-retrieval migrate --model {model_path}"


def migrate_command(model_path: Path | str) -> str:
    return MIGRATE_COMMAND.format(model_path=model_path)


def read_record(store: Store) -> MigrationRecord | None:
    raw = store.get_meta(MIGRATION_KEY)
    return None if raw is None else MigrationRecord.from_json(raw)


def write_record(store: Store, record: MigrationRecord | None) -> None:
    """One transaction: the state (and with it the active model) changes at once."""
    store.set_meta(MIGRATION_KEY, None if record is None else record.to_json())


def new_record(source: ModelIdentity, target: ModelIdentity, installed: Path) -> MigrationRecord:
    return MigrationRecord(
        source=source,
        target=target,
        target_sha256=file_sha256(installed),
        target_path=str(installed),
        state="re-embedding",
        started_at=time.time(),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install_model(model: Path, models_dir: Path) -> Path:
    """Copy ``model`` (and the ``.json`` beside it, if any) to ``models_dir/<digest>/``, where
    every replica reads it; the installed ONNX path. Written under a temporary name, fsynced
    and renamed, so a replica never loads half a file."""
    digest = file_sha256(model)
    folder = models_dir / digest[:16]
    target = folder / model.name
    if target.is_file() and file_sha256(target) == digest:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    for source in (model, model.with_suffix(".json")):
        if not source.is_file():
            continue
        temporary = folder / f".tmp-{source.name}"
        shutil.copyfile(source, temporary)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, folder / source.name)
    return target


def load_target(record: MigrationRecord, settings: Settings) -> OnnxEmbedder:
    """The target model from its installed file, refused if the file changed since."""
    path = Path(record.target_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"the migration's model {path} is missing (RETRIEVAL_MODELS_DIR must be a directory "
            "every replica reads)"
        )
    if file_sha256(path) != record.target_sha256:
        raise ValueError(f"{path} is not the file the migration started with (digest differs)")
    return load_embedder(settings, path)


def shadow_sqlite_path(settings: Settings, record: MigrationRecord) -> Path:
    original = settings.sqlite_path
    return original.with_name(f"{original.stem}.{record.shadow_tag}{original.suffix}")


def shadow_namespace(settings: Settings, record: MigrationRecord) -> str:
    return f"{settings.redis_namespace}@{record.shadow_tag}"


def open_shadow_store(settings: Settings, record: MigrationRecord) -> Store:
    """The target model's store: beside the original, same backend."""
    return open_store(
        settings,
        namespace=shadow_namespace(settings, record),
        sqlite_path=shadow_sqlite_path(settings, record),
    )


@contextmanager
def every_reference(settings: Settings, store: Store) -> Iterator[HashReferences]:
    """``store``'s blob references, and during a migration its shadow's too: what a blob sweep
    must keep."""
    record = read_record(store)
    if record is None:
        yield store
        return
    shadow = open_shadow_store(settings, record)
    try:
        yield AnyOf([store, shadow])
    finally:
        shadow.close()


def embed_originals(embedder: OnnxEmbedder, max_pixels: int) -> EmbedOriginals:
    """Originals → embeddings with ``embedder``'s own preprocessing (its spec), in this thread."""

    def embed(originals: Sequence[bytes]) -> npt.NDArray[np.float32]:
        arrays, failures = decode_failures(
            originals, lambda data: preprocess_bytes(data, embedder.spec, max_pixels=max_pixels)
        )
        if failures:
            raise UnreadableImagesError(failures)
        return embedder.embed(stack_batch(arrays))

    return embed
