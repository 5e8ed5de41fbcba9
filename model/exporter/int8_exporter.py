"""Export the INT8 twin of an FP32 embedder: quantise, gate against the FP32 model, install.

The INT8 model is an artifact of its own: the FP32 contract (same preprocessing, JPEG draft
included) with ``model_version`` ``<fp32 version>+int8``, so a store's identity check (name,
version, dim) refuses to mix its embeddings with the FP32 model's, and switching a store to it
is a migration like any other model change. It is written like the FP32 export: to temporary
files beside the destination, renamed into place only after the gate passed; a refused or
interrupted export leaves the destination as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import CONTRACT_KEY, ContractError, PreprocessSpec
from model.data.dataset_split import DatasetSplit
from model.data.folder_items import read_folder_items
from model.exporter.calibration_photos import DEFAULT_CALIBRATION_LIMIT, load_calibration_batch
from model.exporter.int8_parity_gate import (
    INT8_GATE,
    Int8ParityError,
    Int8ParityReport,
    Int8Thresholds,
    check_int8_parity,
    shipped_photo_split,
)
from model.exporter.int8_quantizer import QuantizedModel, quantize_with_search
from model.exporter.onnx_exporter import _temp_path, publish_model_files
from model.exporter.parity_photos import load_parity_photos

log = logging.getLogger(__name__)

INT8_VERSION_SUFFIX = "+int8"
# Beside the contract, how the INT8 model was made (read by people, not by the service).
INT8_METADATA_KEY = "centroid_retrieval.int8"


@dataclass(frozen=True)
class Int8ExportResult:
    onnx_path: Path
    contract_path: Path
    spec: PreprocessSpec
    calibration_photos: int
    quantized: QuantizedModel  # its ``path`` was a scratch file, gone after the export
    parity: Int8ParityReport


def int8_basename(basename: str) -> str:
    """``embedder`` → ``embedder-int8``: the INT8 files sit beside the FP32 ones."""
    return f"{basename}-int8"


def int8_spec(fp32: PreprocessSpec) -> PreprocessSpec:
    """The FP32 contract with the version that says INT8 and today's export date."""
    if fp32.model_version.endswith(INT8_VERSION_SUFFIX):
        raise ContractError(f"{fp32.model_name} v{fp32.model_version} is already an INT8 model")
    return dataclasses.replace(
        fp32,
        model_version=fp32.model_version + INT8_VERSION_SUFFIX,
        export_date=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    )


def export_int8(
    fp32_path: Path,
    out_dir: Path,
    calibration_dir: Path,
    *,
    basename: str = "embedder-int8",
    parity_photos: Sequence[bytes] | None = None,
    recall_folder: Path | None = None,
    thresholds: Int8Thresholds = INT8_GATE,
    fp32_layers: int | None = None,
    calibration_limit: int = DEFAULT_CALIBRATION_LIMIT,
) -> Int8ExportResult:
    """Write ``out_dir/<basename>.onnx`` and ``.json``: ``fp32_path`` statically quantised.

    ``calibration_dir``: images (any depth) read through the FP32 contract's pixel path;
    ``parity_photos``: encoded images (default: the FP32 gate's); ``recall_folder``: a labelled
    folder (``model.data.folder_items`` layouts; default: written from the shipped photos);
    ``fp32_layers``: leading compute layers kept in float32 (default: searched, see
    :func:`~model.exporter.int8_quantizer.quantize_with_search`).

    Raises ``CalibrationError`` (bad calibration folder), ``QuantizationError`` (no prefix
    agrees on the calibration photos) or :class:`Int8ParityError` (the gate refused); in every
    case nothing is written.
    """
    fp32_spec = OnnxEmbedder(fp32_path, allow_gpu=False).spec
    spec = int8_spec(fp32_spec)
    photos = load_calibration_batch(calibration_dir, fp32_spec, calibration_limit)
    parity = list(parity_photos) if parity_photos is not None else load_parity_photos()
    onnx_path = out_dir / f"{basename}.onnx"
    contract_path = out_dir / f"{basename}.json"
    tmp_onnx = _temp_path(out_dir, basename, ".onnx")
    tmp_contract = _temp_path(out_dir, basename, ".json")
    with tempfile.TemporaryDirectory(prefix="int8-export-") as scratch:
        try:
            quantized = quantize_with_search(
                fp32_path,
                photos,
                Path(scratch),
                min_mean_cosine=thresholds.min_mean_cosine,
                min_cosine=thresholds.min_cosine,
                fp32_layers=fp32_layers,
            )
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_int8_model(quantized, spec, fp32_spec, photos.shape[0], tmp_onnx)
            tmp_contract.write_text(spec.to_json() + "\n")
            split = _recall_split(recall_folder, Path(scratch) / "recall-folder")
            report = check_int8_parity(fp32_path, tmp_onnx, parity, split)
            log.info("%s", report)
            print(report, flush=True)
            failures = report.failures(thresholds)
            if failures:
                raise Int8ParityError(f"INT8 export refused: {'; '.join(failures)} ({report})")
            publish_model_files(tmp_onnx, tmp_contract, onnx_path, contract_path)
        finally:
            tmp_onnx.unlink(missing_ok=True)
            tmp_contract.unlink(missing_ok=True)
    return Int8ExportResult(onnx_path, contract_path, spec, photos.shape[0], quantized, report)


def _recall_split(folder: Path | None, scratch: Path) -> DatasetSplit:
    if folder is None:
        return shipped_photo_split(scratch)
    return read_folder_items(folder, name=str(folder))


def _write_int8_model(
    quantized: QuantizedModel,
    spec: PreprocessSpec,
    fp32_spec: PreprocessSpec,
    calibration_photos: int,
    path: Path,
) -> None:
    """The chosen attempt with the INT8 contract (and how it was made) as its metadata."""
    model = onnx.load(str(quantized.path))
    del model.metadata_props[:]
    made = {
        "fp32_model_version": fp32_spec.model_version,
        "calibration_photos": calibration_photos,
        "calibration": "MinMax over all calibration photos",
        "weights": "int8, per output channel",
        "activations": "uint8, per tensor",
        "fp32_layers": quantized.fp32_layers,
        "compute_layers": quantized.compute_layers,
    }
    for key, value in ((CONTRACT_KEY, spec.to_dict()), (INT8_METADATA_KEY, made)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value, sort_keys=True)
    model.producer_name = "centroid-retrieval"
    onnx.save(model, str(path))
