"""``centroid-retrieval``: the project's command line.

Every subcommand imports what it needs when it runs, so ``serve`` and ``enroll-folder`` work in
an install without the training kit, and ``enroll-folder`` in one without the service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import cast

from cli import (
    enroll_folder_command,
    hard_cases_command,
    maintenance_commands,
    make_key_command,
    migrate_command,
    serve_command,
    training_kit_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="centroid-retrieval",
        description="Image retrieval by item centroids: the service, the training kit and a "
        "client. `centroid-retrieval COMMAND --help` describes each command.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_command.add_parser(subparsers)
    training_kit_commands.add_parsers(subparsers)
    enroll_folder_command.add_parser(subparsers)
    make_key_command.add_parser(subparsers)
    maintenance_commands.add_parsers(subparsers)
    hard_cases_command.add_parser(subparsers)
    migrate_command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    run = cast(Callable[[argparse.Namespace], int], args.run)
    return run(args)
