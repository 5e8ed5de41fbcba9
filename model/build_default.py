"""``python -m model.build_default --out models/default``: build and export the default model.

``--int8 --calibration-dir DIR`` also writes its INT8 twin, ``embedder-int8.onnx`` (see
``python -m model.export``); off by default.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from model.exporter.default_embedder import (
    DEFAULT_JPEG_DRAFT_MIN_RATIO,
    build_default_net,
    default_spec,
)
from model.exporter.int8_option import add_int8_arguments, check_int8_arguments, run_int8_export
from model.exporter.jpeg_draft_option import add_jpeg_draft_arguments
from model.exporter.onnx_exporter import ParityError, export_embedder
from model.exporter.parity_photos import load_parity_photos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("models/default"))
    parser.add_argument(
        "--parity-photos", type=Path, default=None, help="folder of photos (default: skimage's)"
    )
    add_jpeg_draft_arguments(parser, default=DEFAULT_JPEG_DRAFT_MIN_RATIO)
    add_int8_arguments(parser)
    args = parser.parse_args(argv)
    check_int8_arguments(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    net = build_default_net()
    try:
        result = export_embedder(
            net,
            default_spec(net, jpeg_draft_min_ratio=args.jpeg_draft_min_ratio),
            args.out,
            load_parity_photos(args.parity_photos),
        )
    except ParityError as exc:
        # Non-zero exit so make stops; the exporter has left no model file for it to reuse.
        print(f"error: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {result.onnx_path} and {result.contract_path}")
    if args.int8:
        return run_int8_export(args, result.onnx_path, args.out, "embedder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
