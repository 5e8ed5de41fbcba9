"""``export-hard-cases``: the gallery's confusable pairs, suspect images and leave-one-out
misses as a folder dataset (``app/hard_cases.py``), for review or the next fine-tuning round.

It reads the store and blobs the ``RETRIEVAL_*`` settings name, as ``compact`` and ``backup``
do; the quality gate's settings (``RETRIEVAL_SUSPECT_MARGIN``, ``RETRIEVAL_SUSPECT_MIN_Z``)
judge the suspects as the service does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cli.maintenance_commands import with_store

if TYPE_CHECKING:
    from app.settings import Settings
    from store.blob_backend import BlobBackend
    from store.store import Store

DEFAULT_PAIRS = 50  # the same figure as app.hard_cases.DEFAULT_PAIRS (tested)

DESCRIPTION = """\
Write the gallery's hard cases into DIR (new or empty): DIR/dataset/<item>/<image> holds every
image of every item a hard case names, flagged and quarantined images left out (a folder
dataset model.train reads with data.dataset=folder), DIR/suspects/<item>/<image> the images the
quality gate flags, DIR/quarantined/<item>/<image> those held out of their items' sums, and
DIR/hard_cases.json the confusable item pairs (the --pairs most similar centroids), the
suspects with their reasons and the leave-one-image-out misses with the item that beat each.
Computed from the stored embeddings (no model call); every item's sums and centroid are held
in memory (about 20 * D bytes per item).
Needs RETRIEVAL_KEEP_BLOBS. Exit status 1 when a referenced original is missing (listed in
hard_cases.json)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export-hard-cases",
        help="export confusable pairs, suspect images and leave-one-out misses as a dataset",
        description=DESCRIPTION,
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="new or empty")
    parser.add_argument(
        "--pairs",
        type=int,
        default=DEFAULT_PAIRS,
        help="confusable item pairs to export (default: %(default)s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def export(settings: Settings, store: Store, blobs: BlobBackend | None) -> int:
        from app.hard_cases import export_hard_cases, find_hard_cases
        from index.suspect_images import SuspectRule

        if blobs is None:
            print("the store keeps no originals (RETRIEVAL_KEEP_BLOBS is off): nothing to export")
            return 1
        rule = SuspectRule(margin=settings.suspect_margin, min_z=settings.suspect_min_z)
        cases = find_hard_cases(store, rule, pairs=args.pairs)
        report = export_hard_cases(store, blobs, cases, args.out)
        print(
            f"{cases.items} items, {cases.images} images: {len(cases.pairs)} confusable pairs, "
            f"{sum(len(s) for s in cases.suspects.values())} suspect images in "
            f"{len(cases.suspects)} items, {len(cases.misses)} leave-one-out misses, "
            f"{sum(len(q) for q in cases.quarantined.values())} quarantined images"
        )
        print(
            f"wrote {report.dataset_images} images of {len(cases.named_items())} items to "
            f"{args.out / 'dataset'}, {report.suspect_images} to {args.out / 'suspects'}, "
            f"{report.quarantined_images} to {args.out / 'quarantined'}, "
            f"{args.out / 'hard_cases.json'}"
        )
        if report.missing_blobs:
            print(f"{len(report.missing_blobs)} originals missing (listed in hard_cases.json)")
            return 1
        return 0

    return with_store(export, must_exist=True)
