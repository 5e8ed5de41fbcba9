"""``serve``: the retrieval service under uvicorn, one worker, settings from the environment."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

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
Run the retrieval service (app.main:create_app) under uvicorn with one worker: one process per
instance, concurrency comes from its thread pool. Every other setting comes from the RETRIEVAL_*
environment variables (the README's Settings table), e.g. RETRIEVAL_MODEL_PATH (default:
models/default/embedder.onnx, relative to the current directory) and RETRIEVAL_DATA_DIR
(default: data)."""


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


def run(args: argparse.Namespace) -> int:
    missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"error: the service's runtime is not installed (no module {', '.join(missing)}): "
            'pip install -e ".[serve]"  (or ".[serve-gpu]" on a CUDA machine, never both)',
            file=sys.stderr,
        )
        return 1
    import uvicorn
    from pydantic import ValidationError

    from app.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"error: invalid RETRIEVAL_* setting: {exc}", file=sys.stderr)
        return 1
    if not settings.model_path.is_file():
        print(f"error: {missing_model_message(settings.model_path)}", file=sys.stderr)
        return 1
    # The factory reads the same environment again, in the process that serves.
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        log_level=settings.log_level.lower(),
    )
    return 0
