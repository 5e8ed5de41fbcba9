"""The export commands' JPEG draft switch, ``--jpeg-draft-min-ratio R`` / ``--no-jpeg-draft``,
and what it writes into the contract.

The draft changes the embedding of every JPEG it applies to (slightly: see
``python -m bench.jpeg_draft_quality``), so a drafted export is another model for a store: its
``model_version`` carries ``+jpeg-draft-R`` and switching a store to or from it goes through a
migration like any other model change, instead of mixing the two decodes' embeddings in one
centroid.
"""

from __future__ import annotations

import argparse
import dataclasses

from artifact.preprocess_spec import MIN_JPEG_DRAFT_RATIO, PreprocessSpec


def add_jpeg_draft_arguments(parser: argparse.ArgumentParser, default: float | None) -> None:
    """``--jpeg-draft-min-ratio R`` and ``--no-jpeg-draft`` (exclusive), both read back as
    ``args.jpeg_draft_min_ratio`` (``None``: off)."""
    group = parser.add_mutually_exclusive_group()
    shown = "off" if default is None else f"{default:g}"
    group.add_argument(
        "--jpeg-draft-min-ratio",
        type=draft_ratio,
        default=default,
        metavar="R",
        help="decode JPEGs at least R x the model input DCT-scaled, to no less than R/2 x the "
        f"input, before the exact resize (R >= {MIN_JPEG_DRAFT_RATIO:g}; default {shown})",
    )
    group.add_argument(
        "--no-jpeg-draft",
        dest="jpeg_draft_min_ratio",
        action="store_const",
        const=None,
        help="decode every image in full",
    )


def with_jpeg_draft(spec: PreprocessSpec, ratio: float | None) -> PreprocessSpec:
    """``spec`` with ``jpeg_draft_min_ratio = ratio`` and, when on, the version that says so.

    ``spec`` is the contract without a draft (its ``model_version`` the network's own).
    """
    if spec.jpeg_draft_min_ratio is not None:
        raise ValueError(f"{spec.model_name} already has jpeg_draft_min_ratio set")
    if ratio is None:
        return spec
    return dataclasses.replace(
        spec,
        jpeg_draft_min_ratio=ratio,
        model_version=f"{spec.model_version}+jpeg-draft-{ratio:g}",
    )


def draft_ratio(text: str) -> float:
    """argparse type of a ``jpeg_draft_min_ratio``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    # Also refuses nan (every comparison with it is false) and inf (never reached by a source).
    if not MIN_JPEG_DRAFT_RATIO <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"the ratio must be a finite number >= {MIN_JPEG_DRAFT_RATIO:g}, got {text}"
        )
    return value
