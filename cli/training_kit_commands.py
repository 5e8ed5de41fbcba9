"""``train``, ``evaluate``, ``export``: the training kit's own commands under one name.

Each hands its arguments, untouched, to the ``main`` of its ``python -m model.*`` module, which
is imported only when the command runs: the other commands work where torch is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import partial

INSTALL_HINT = 'pip install -e ".[serve,train]"  (or ".[serve-gpu,train]" on a CUDA machine)'


@dataclass(frozen=True)
class KitCommand:
    name: str
    module: str
    summary: str


KIT_COMMANDS = (
    KitCommand("train", "model.train", "train an embedding model (python -m model.train)"),
    KitCommand(
        "evaluate",
        "model.evaluate",
        "score a checkpoint or an ONNX model on a held-out split (python -m model.evaluate)",
    ),
    KitCommand(
        "export",
        "model.export",
        "export a checkpoint to the ONNX file the service serves (python -m model.export)",
    ),
)


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command in KIT_COMMANDS:
        parser = subparsers.add_parser(
            command.name,
            help=command.summary,
            description=f"{command.summary}; `centroid-retrieval {command.name} --help` "
            "shows its arguments.",
            # No option characters and no -h of its own: every argument, --help included,
            # goes to the module's parser (a REMAINDER that starts with an option would
            # otherwise be taken for one of ours).
            add_help=False,
            prefix_chars="\0",
        )
        parser.add_argument(
            "args",
            nargs=argparse.REMAINDER,
            help=f"the arguments of python -m {command.module} (default: none)",
        )
        parser.set_defaults(run=partial(run, command))


def run(command: KitCommand, args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(command.module)
        status: int = module.main(list(args.args))
    except ModuleNotFoundError as exc:
        if not _is_missing_distribution(exc):
            raise
        print(
            f"error: centroid-retrieval {command.name} needs the training kit, and module "
            f"{exc.name!r} is not installed. Install the train extra: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 1
    return status


def _is_missing_distribution(exc: ModuleNotFoundError) -> bool:
    """Whether no package of that name is installed at all (torch, onnx, skimage, ...).

    Raised on import or by a lazy import inside the command, that is an install without the
    training kit (or without a runtime). A missing submodule of a package that is there (one of
    the project's own, say) is a bug to show whole, not an extra to install.
    """
    top = (exc.name or "").partition(".")[0]
    return bool(top) and importlib.util.find_spec(top) is None
