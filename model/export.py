"""``python -m model.export runs/x/best.pt --out models/mine [--parity-photos DIR]``.

Writes ``<out>/embedder.onnx`` (contract in its metadata) and ``<out>/embedder.json`` with the
same exporter as the default model, then checks PyTorch vs ONNX Runtime parity on real photos.
Serve it with ``RETRIEVAL_MODEL_PATH=<out>/embedder.onnx``.

``--int8 --calibration-dir DIR`` also writes ``<out>/embedder-int8.onnx`` (and ``.json``): the
FP32 export statically quantised, calibrated on DIR's photos, with its own parity gate against
the FP32 model and its own version (``<version>+int8``). ``--int8-from FP32.onnx`` quantises an
existing export instead of a checkpoint::

    python -m model.export --int8-from models/default/embedder.onnx --int8 \
        --calibration-dir data/photo_folder/gallery --out models/default
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from artifact.preprocess_spec import PreprocessSpec
from model.engine.checkpoint import load_model_from_checkpoint
from model.engine.registries import OUTPUT_NORMALIZED
from model.exporter.int8_option import add_int8_arguments, check_int8_arguments, run_int8_export
from model.exporter.jpeg_draft_option import add_jpeg_draft_arguments, with_jpeg_draft
from model.exporter.onnx_exporter import ExportResult, ParityError, export_embedder
from model.exporter.parity_photos import load_parity_photos

# Enough hex digits of the checkpoint's SHA-256 to tell versions of one run apart.
VERSION_DIGITS = 12


def file_version(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:VERSION_DIGITS]


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    parity_dir: Path | None = None,
    basename: str = "embedder",
    jpeg_draft_min_ratio: float | None = None,
) -> ExportResult:
    """Rebuild the checkpoint's network and export its ``embed`` with the contract (JPEG draft
    off unless ``jpeg_draft_min_ratio`` is given)."""
    net, cfg = load_model_from_checkpoint(checkpoint)
    backbone = net.backbone
    spec = PreprocessSpec(
        input_size=cfg.data.input_size,
        embedding_dim=int(net.embedding_dim),
        model_name=cfg.name,
        model_version=file_version(checkpoint),
        output_normalized=OUTPUT_NORMALIZED[cfg.model.name],
        source_checkpoint=str(checkpoint),
        graph_normalization={
            "mean": list(backbone.mean),  # type: ignore[union-attr, arg-type]
            "std": list(backbone.std),  # type: ignore[union-attr, arg-type]
            "scale": [1 / 255],
        },
    )
    spec = with_jpeg_draft(spec, jpeg_draft_min_ratio)
    return export_embedder(net, spec, out_dir, load_parity_photos(parity_dir), basename=basename)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.export", description=__doc__)
    parser.add_argument(
        "checkpoint", type=Path, nargs="?", help="a .pt written by model.train (or --int8-from)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--parity-photos", type=Path, default=None, help="folder of photos (default: shipped)"
    )
    parser.add_argument("--basename", default="embedder", help="file names <basename>.onnx/.json")
    # Off unless asked: measure your model with `python -m bench.jpeg_draft_quality` first.
    add_jpeg_draft_arguments(parser, default=None)
    int8_group = add_int8_arguments(parser)
    int8_group.add_argument(
        "--int8-from",
        type=Path,
        default=None,
        metavar="FP32.onnx",
        help="with --int8: quantise this existing export (its contract, JPEG draft included) "
        "instead of exporting a checkpoint",
    )
    args = parser.parse_args(argv)
    check_int8_arguments(parser, args)
    if (args.checkpoint is None) == (args.int8_from is None):
        parser.error("give a checkpoint to export, or --int8-from FP32.onnx to quantise")
    if args.int8_from is not None:
        if not args.int8:
            parser.error("--int8-from needs --int8 --calibration-dir DIR")
        if args.jpeg_draft_min_ratio is not None:
            parser.error("the INT8 model decodes as its FP32 model does: drop the draft option")
        return run_int8_export(args, args.int8_from, args.out, args.basename)
    try:
        result = export_checkpoint(
            args.checkpoint, args.out, args.parity_photos, args.basename, args.jpeg_draft_min_ratio
        )
    except ParityError as exc:
        # An expected outcome, not a crash: say what failed and that nothing was written.
        print(f"error: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {result.onnx_path} and {result.contract_path}")
    print(
        f"model {result.spec.model_name} version {result.spec.model_version}: input "
        f"{result.spec.input_size[0]}x{result.spec.input_size[1]}, D={result.spec.embedding_dim}, "
        f"output_normalized={result.spec.output_normalized}"
    )
    if args.int8:
        return run_int8_export(args, result.onnx_path, args.out, args.basename)
    return 0


if __name__ == "__main__":
    sys.exit(main())
