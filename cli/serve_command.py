"""``serve``: the retrieval service under uvicorn, one worker, settings from the environment."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

# What the service imports from the `serve` (or `serve-gpu`) extra, by module name.
SERVE_MODULES = (
    "fastapi",
    "uvicorn",
    "onnxruntime",
    "faiss",
    "pydantic_settings",
    "python_multipart",
    "redis",
    "prometheus_client",
)
BUILD_COMMAND = "python -m model.build_default --out {out}"
DESCRIPTION = """\
Run the retrieval service (app.main:create_app) under uvicorn with one worker, as the image
does (python -m app.server): one process per instance, concurrency comes from its thread pool.
Every other setting comes from the RETRIEVAL_* environment variables (the README's Settings
table), e.g. RETRIEVAL_MODEL_PATH (default: models/default/embedder.onnx, relative to the
current directory) and RETRIEVAL_DATA_DIR (default: data)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the retrieval service (uvicorn, one worker)", description=DESCRIPTION
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on; 0.0.0.0 for every one (default: %(default)s)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.set_defaults(run=run)


def missing_model_message(model_path: Path) -> str:
    out = model_path.parent if model_path.name == "embedder.onnx" else Path("models/default")
    message = (
        f"no model at {model_path}. Build the default one (needs the training kit):\n"
        '  pip install -e ".[serve,train]"\n'
        f"  {BUILD_COMMAND.format(out=out)}    (or: make model)"
    )
    if out / "embedder.onnx" != model_path:
        message += f"\nthen set RETRIEVAL_MODEL_PATH={out / 'embedder.onnx'}"
    return message


def _access_refusal(settings: Settings, host: str) -> str | None:
    """Why the service must not start with these keys on ``host`` (None: it may).

    Secure by default: without keys it serves loopback only, unless anonymous access was asked
    for, which is then said out loud.
    """
    from app.access_policy import AccessPolicy, is_loopback
    from app.api_keys import ApiKeyConfigError

    try:
        access = AccessPolicy.from_settings(settings)
    except ApiKeyConfigError as exc:
        return f"API keys: {exc}"
    if access.keys_required or is_loopback(host):
        return None
    if not access.allow_anonymous:
        return (
            f"refusing to serve on {host}, a non-loopback address, without API keys: anyone "
            "on the network could enroll and delete. Make a key with "
            "`centroid-retrieval make-key --scopes read,write` and set RETRIEVAL_API_KEYS to "
            "the line it prints (or RETRIEVAL_API_KEYS_FILE), serve on 127.0.0.1, or allow "
            "anonymous access explicitly with RETRIEVAL_ALLOW_ANONYMOUS=true."
        )
    print(
        f"warning: serving on {host} with RETRIEVAL_ALLOW_ANONYMOUS=true and no API keys: "
        "anyone who can reach it may search, enroll and delete",
        file=sys.stderr,
    )
    return None


def run(args: argparse.Namespace) -> int:
    missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"error: the service's runtime is not installed (no module {', '.join(missing)}): "
            'pip install -e ".[serve]"  (or ".[serve-gpu]" on a CUDA machine, never both)',
            file=sys.stderr,
        )
        return 1
    from pydantic import ValidationError

    from app.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid RETRIEVAL_* setting: {exc}", file=sys.stderr)
        return 1
    refusal = _access_refusal(settings, args.host)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    if not settings.model_path.is_file():
        print(f"error: {missing_model_message(settings.model_path)}", file=sys.stderr)
        return 1
    # The image's command too: one launcher, so both get the slow-client deadlines and caps.
    from app.server import STARTUP_FAILURE, serve

    return 0 if serve(settings, args.host, args.port) else STARTUP_FAILURE
