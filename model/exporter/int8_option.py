"""The export commands' INT8 switch: ``--int8 --calibration-dir DIR`` (off by default), the
options of its gate, and the run that reports a refusal as an error message, not a crash."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from artifact.preprocess_spec import ContractError
from model.exporter.calibration_photos import CalibrationError
from model.exporter.int8_exporter import export_int8, int8_basename
from model.exporter.int8_parity_gate import Int8ParityError
from model.exporter.int8_quantizer import QuantizationError
from model.exporter.parity_photos import load_parity_photos


def add_int8_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The INT8 options, in a group of their own (returned, for a command's own additions)."""
    group = parser.add_argument_group("INT8 (off by default)")
    group.add_argument(
        "--int8",
        action="store_true",
        help="also write <basename>-int8.onnx/.json: the FP32 model statically quantised (QDQ), "
        "version <version>+int8, installed only if it passes its own parity gate",
    )
    group.add_argument(
        "--calibration-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="photos (any depth) to calibrate the INT8 activation ranges on; required by --int8",
    )
    group.add_argument(
        "--int8-fp32-layers",
        type=_layer_count,
        default=None,
        metavar="K",
        help="keep the first K compute layers in float32 (default: the fewest for which the "
        "calibration photos pass the gate's cosine bars)",
    )
    group.add_argument(
        "--recall-folder",
        type=Path,
        default=None,
        metavar="DIR",
        help="labelled folder for the gate's Recall@1 (default: written from the shipped photos)",
    )
    return group


def check_int8_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` on INT8 options that cannot mean what they say."""
    if args.int8 and args.calibration_dir is None:
        parser.error("--int8 needs --calibration-dir DIR (photos to calibrate on)")
    if not args.int8 and (
        args.calibration_dir is not None
        or args.int8_fp32_layers is not None
        or args.recall_folder is not None
    ):
        parser.error("--calibration-dir, --int8-fp32-layers and --recall-folder need --int8")


def run_int8_export(args: argparse.Namespace, fp32_path: Path, out_dir: Path, basename: str) -> int:
    """Quantise ``fp32_path`` into ``out_dir`` as the parsed options say; the exit status."""
    try:
        result = export_int8(
            fp32_path,
            out_dir,
            args.calibration_dir,
            basename=int8_basename(basename),
            parity_photos=load_parity_photos(args.parity_photos),
            recall_folder=args.recall_folder,
            fp32_layers=args.int8_fp32_layers,
        )
    except (
        FileNotFoundError,
        ContractError,
        CalibrationError,
        QuantizationError,
        Int8ParityError,
    ) as exc:
        print(f"error: {exc}; no INT8 model was written to {out_dir}", file=sys.stderr)
        return 1
    q = result.quantized
    print(f"wrote {result.onnx_path} and {result.contract_path}")
    print(
        f"model {result.spec.model_name} version {result.spec.model_version}: calibrated on "
        f"{result.calibration_photos} photos, {q.fp32_layers} of {q.compute_layers} compute "
        "layers in float32"
    )
    return 0


def _layer_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value
