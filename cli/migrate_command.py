"""``migrate``: re-embed the store with a new model into a shadow, then switch (or roll back).

It acts on the store the ``RETRIEVAL_*`` settings name, like the maintenance commands: run it
with the service's environment. The service keeps serving the current model meanwhile and
follows the store's migration record (``store/migration_record.py``): it writes every
enrollment and delete to both models' stores, and serves the target once switched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.gallery_quality import ModelComparison
    from app.reembed_job import LeftOut, Progress, ReembedReport
    from app.settings import Settings
    from artifact.onnx_embedder import OnnxEmbedder
    from store.blob_backend import BlobBackend
    from store.migration_record import MigrationRecord
    from store.store import Store

# How many left-out images are named before only the rest is counted.
MAX_LISTED = 50
# --switch refuses a model whose gallery leave-one-out R@1 is below the serving model's by more
# than this (a fraction: 0.02 is two points; about twice the figure's spread on a 2000-image
# sample), unless --force.
DEFAULT_MAX_R1_DROP = 0.02

DESCRIPTION = """\
Move the store to another model without stopping the service. `migrate --model NEW.onnx`
installs the file in RETRIEVAL_MODELS_DIR (default <data_dir>/models; with replicas, a
directory every replica reads), records the migration in the store and re-embeds every kept
original with it into a shadow store beside the current one (SQLite: a second file; Redis: the
namespace <namespace>@<tag>), item by item, printing images/s and the ETA. Stop it at any time
and run it again: it continues where it stopped. `--dry-run` only counts items, images and
missing originals and times the model on a sample. `--switch` catches up (re-embeds what
changed since) and makes the new model the active one; `--rollback` makes the old one active
again (it received every write meanwhile); `--abandon` drops a migration that is not switched;
`--finish`, once switched and with the service stopped, makes the new model's store the one
the settings name (SQLite: the files are renamed, the old one kept; Redis: the namespace to
configure is printed).
Images whose original is missing are listed (exit status 1), never silently dropped.
Once the shadow is complete, and again at --switch, both models' leave-one-image-out R@1 and
MRR on the gallery (the same sampled images, RETRIEVAL_QUALITY_SAMPLE_IMAGES of them; see
GET /quality) are printed side by side; --switch refuses a new model whose R@1 is lower by
more than --max-r1-drop unless --force."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="re-embed the store with a new model into a shadow, switch or roll back",
        description=DESCRIPTION,
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--model", type=Path, metavar="NEW.onnx", help="start or resume")
    action.add_argument("--switch", action="store_true", help="serve the new model")
    action.add_argument("--rollback", action="store_true", help="serve the old model again")
    action.add_argument("--abandon", action="store_true", help="forget an unswitched migration")
    action.add_argument("--status", action="store_true", help="print the migration's record")
    action.add_argument(
        "--finish",
        action="store_true",
        help="after --switch, with the service stopped: make the new model's store the one "
        "the settings name, and retire the old one",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --model: count and estimate, write nothing"
    )
    parser.add_argument(
        "--max-r1-drop",
        type=float,
        default=DEFAULT_MAX_R1_DROP,
        metavar="FRACTION",
        help="with --switch: refuse when the new model's gallery leave-one-out R@1 is lower "
        "than the serving model's by more than this (default: %(default)s)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --switch: switch even when the new model measures worse",
    )
    parser.set_defaults(run=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from app.blob_backend_choice import build_blob_backend
    from app.settings import Settings
    from app.store_choice import open_store
    from artifact.preprocess_spec import ContractError
    from store.blob_backend import BlobUnavailableError
    from store.errors import StoreError

    if args.dry_run and args.model is None:
        return _error("--dry-run goes with --model")
    try:
        settings = Settings()
    except ValidationError as exc:
        return _error(f"invalid RETRIEVAL_* setting: {exc}")
    if not settings.redis_url and not settings.sqlite_path.is_file():
        return _error(f"no store at {settings.sqlite_path} (RETRIEVAL_DATA_DIR)")
    try:
        store = open_store(settings)
        try:
            store.ping()
            if args.status:
                return _status(store)
            if args.rollback or args.abandon:
                return _rollback(store, abandon=args.abandon)
            if args.finish:
                return _finish(settings, store)
            blobs = build_blob_backend(settings)
            if blobs is None:
                return _error("RETRIEVAL_KEEP_BLOBS is off: no originals to re-embed")
            if args.switch:
                return _switch(settings, store, blobs, args.max_r1_drop, force=args.force)
            return _migrate(settings, store, blobs, args.model, dry_run=args.dry_run)
        finally:
            store.close()
    except (StoreError, BlobUnavailableError, ContractError, OSError, ValueError) as exc:
        return _error(str(exc))


def _migrate(
    settings: Settings, store: Store, blobs: BlobBackend, model: Path, *, dry_run: bool
) -> int:
    from app.model_migration import (
        embed_originals,
        install_model,
        new_record,
        read_record,
        write_record,
    )
    from app.reembed_job import dry_run as count_and_time
    from app.retriever import model_identity
    from artifact.onnx_embedder import OnnxEmbedder

    embedder = OnnxEmbedder(model, allow_gpu=settings.allow_gpu)
    target = model_identity(embedder)
    source = store.get_model_identity()
    if source is None:
        return _error("the store holds no embeddings yet: serve the new model on it instead")
    record = read_record(store)
    embed = embed_originals(embedder, settings.max_image_pixels)
    if dry_run:
        counted = count_and_time(store, blobs, embed)
        print(f"from {source.describe()} to {target.describe()}")
        print(
            f"{counted.items} items, {counted.images} images, {len(counted.missing)} missing blobs"
        )
        per_image = counted.seconds_per_image
        if per_image is None:
            print("estimated model time: unknown (no original could be embedded)")
        else:
            print(
                f"estimated model time: {counted.images * per_image:.0f} s "
                f"({per_image * 1000:.1f} ms per image, timed on {counted.sample_images} "
                "originals; the store's writes come on top: about 2 per item)"
            )
            print(
                f"inside the service (POST /admin/migration?action=reembed, at "
                f"RETRIEVAL_REEMBED_SHARE {settings.reembed_share:.0%} of the model): at least "
                f"{counted.images * per_image / settings.reembed_share:.0f} s"
            )
        _list(counted.missing)
        return 1 if counted.missing else 0
    if record is None:
        if target == source:
            return _error(f"the store holds {source.describe()} already")
        installed = install_model(model, settings.model_install_dir)
        record = new_record(source, target, installed)
        write_record(store, record)
        print(f"migration recorded: {source.describe()} -> {target.describe()}, {installed}")
    elif record.target != target:
        return _error(
            f"a migration to {record.target.describe()} is recorded already; finish it, or "
            "`centroid-retrieval migrate --abandon` it (or --rollback, then --abandon)"
        )
    report = _reembed(settings, store, blobs, record, embedder)
    if report.in_step and record.state == "re-embedding":
        write_record(store, record.with_state("ready"))
        print("the shadow is complete: `centroid-retrieval migrate --switch` serves the new model")
    if report.in_step:
        _compare(settings, store, record)
    return 0 if report.in_step else 1


def _compare(settings: Settings, store: Store, record: MigrationRecord) -> ModelComparison:
    """Both models' gallery leave-one-out figures on one sample, printed side by side."""
    from app.gallery_quality import compare_models
    from app.model_migration import open_shadow_store

    shadow = open_shadow_store(settings, record)
    try:
        comparison = compare_models(store, shadow, settings.quality_sample_images)
    finally:
        shadow.close()
    for line in comparison.lines(record.source.describe(), record.target.describe()):
        print(line)
    return comparison


def _switch(
    settings: Settings, store: Store, blobs: BlobBackend, max_r1_drop: float, *, force: bool
) -> int:
    from app.model_migration import load_target, read_record, write_record

    record = read_record(store)
    if record is None:
        return _error("no migration is recorded: start one with --model NEW.onnx")
    if record.state == "switched":
        print(f"switched already: {record.target.describe()} serves")
        return 0
    report = _reembed(settings, store, blobs, record, load_target(record, settings))
    if not report.in_step:
        return _error("not switched: the shadow lacks the images listed above")
    comparison = _compare(settings, store, record)
    if comparison.worse_by_more_than(max_r1_drop) and not force:
        return _error(
            f"not switched: {record.target.describe()} finds the gallery's own images worse "
            f"(R@1 {comparison.r_at_1_change:+.4f}, more than --max-r1-drop {max_r1_drop}); "
            "--force switches anyway"
        )
    write_record(store, record.with_state("switched"))
    print(f"switched: {record.target.describe()} serves ({record.source.describe()} kept in step)")
    return 0


def _rollback(store: Store, *, abandon: bool) -> int:
    from app.model_migration import read_record, write_record

    record = read_record(store)
    if record is None:
        return _error("no migration is recorded")
    if abandon:
        if record.state == "switched":
            return _error("the migration is switched: --rollback first")
        write_record(store, None)
        print(
            f"migration to {record.target.describe()} abandoned: {record.source.describe()} "
            "alone receives writes (the shadow's data is kept; --model resumes into it)"
        )
        return 0
    if record.state != "switched":
        print(f"not switched: {record.source.describe()} serves already")
        return 0
    write_record(store, record.with_state("ready"))
    print(
        f"rolled back: {record.source.describe()} serves ({record.target.describe()} kept "
        "in step; --switch again, or --abandon)"
    )
    return 0


def _finish(settings: Settings, store: Store) -> int:
    """The shadow becomes the store the settings name: SQLite files renamed (the old one kept
    as ``store.retired-v<version>.sqlite3``), Redis: the namespace to configure is printed."""
    import sqlite3

    from app.model_migration import read_record, shadow_namespace, shadow_sqlite_path

    record = read_record(store)
    if record is None:
        return _error("no migration is recorded")
    if record.state != "switched":
        return _error(f"the migration is {record.state}: --switch first")
    if settings.redis_url:
        namespace = shadow_namespace(settings, record)
        print(
            f"the new model's store is the Redis namespace {namespace}: start the service with "
            f"RETRIEVAL_REDIS_NAMESPACE={namespace} and RETRIEVAL_MODEL_PATH={record.target_path}"
            "; the namespace "
            f"{settings.redis_namespace} (the old model's) then takes no writes and can be dropped"
        )
        return 0
    store.close()
    original, shadow = settings.sqlite_path, shadow_sqlite_path(settings, record)
    retired = original.with_name(
        f"{original.stem}.retired-v{record.source.version}{original.suffix}"
    )
    if retired.exists():
        return _error(f"{retired} exists already")
    for path in (original, shadow):
        # Out of WAL mode: only possible with no other connection open (the service stopped),
        # and it leaves the whole database in the one file that is renamed.
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.OperationalError as exc:
            return _error(f"{path} is in use ({exc}): stop the service first")
        finally:
            connection.close()
    original.rename(retired)
    shadow.rename(original)
    print(
        f"finished: {original} holds {record.target.describe()}; the old model's store is "
        f"{retired}. Start the service with RETRIEVAL_MODEL_PATH={record.target_path}"
    )
    return 0


def _status(store: Store) -> int:
    from app.model_migration import read_record

    record = read_record(store)
    if record is None:
        print("no migration")
        return 0
    print(record.to_json())
    return 0


def _reembed(
    settings: Settings,
    store: Store,
    blobs: BlobBackend,
    record: MigrationRecord,
    embedder: OnnxEmbedder,
) -> ReembedReport:
    from app.model_migration import embed_originals, open_shadow_store
    from app.reembed_job import ReembedJob

    shadow = open_shadow_store(settings, record)
    try:
        shadow.claim_model_identity(record.target)
        job = ReembedJob(
            primary=store,
            shadow=shadow,
            blobs=blobs,
            embed=embed_originals(embedder, settings.max_image_pixels),
            progress=_print_progress,
        )
        report = job.run()
    finally:
        shadow.close()
    print(report.line())
    _list(report.left_out)
    if report.items_given_up:
        print(
            f"{len(report.items_given_up)} items changed on every attempt (run again): "
            + ", ".join(report.items_given_up[:MAX_LISTED]),
            file=sys.stderr,
        )
    return report


def _print_progress(progress: Progress) -> None:
    print(progress.line(), file=sys.stderr, flush=True)


def _list(left_out: list[LeftOut]) -> None:
    if not left_out:
        return
    print(f"{len(left_out)} images left out (item, image, content hash: reason):", file=sys.stderr)
    for image in left_out[:MAX_LISTED]:
        print(
            f"  {image.item_id} {image.image_id} {image.content_hash}: {image.reason}",
            file=sys.stderr,
        )
    if len(left_out) > MAX_LISTED:
        print(f"  ... and {len(left_out) - MAX_LISTED} more", file=sys.stderr)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1
