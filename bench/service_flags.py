"""The flags of a benchmark that starts its own service: the model it serves and settings for
the run (``--env RETRIEVAL_X=V``), read back into what ``service_process`` takes."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = Path("models/default/embedder.onnx")


def add_service_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="ONNX embedder (default: %(default)s)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="RETRIEVAL_X=V",
        help="a service setting for this run (repeatable)",
    )


def service_flags(args: argparse.Namespace) -> tuple[Path, dict[str, str]]:
    """``(model, env)``; exits with a message when the model file is missing or an ``--env``
    has no ``=``."""
    model: Path = args.model
    if not model.is_file():
        raise SystemExit(f"no model at {model} (make model, or --model PATH)")
    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env takes RETRIEVAL_X=V, got {item!r}")
        env[name] = value
    return model, env
