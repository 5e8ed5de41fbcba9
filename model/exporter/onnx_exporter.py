"""Export a trained embedder to ONNX with its preprocessing contract, then check parity.

One exporter serves the default model (``python -m model.build_default``) and user checkpoints
(``python -m model.export``), so both produce files the service loads without conversion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from artifact.image_decode import preprocess_bytes, stack_batch
from artifact.onnx_embedder import OnnxEmbedder
from artifact.preprocess_spec import CONTRACT_KEY, PreprocessSpec
from model.exporter.uint8_input_wrapper import UInt8InputWrapper
from store.fsync_dir import fsync_dir

log = logging.getLogger(__name__)

# The acceptance bar: every photo's PyTorch and ONNX Runtime embeddings must agree to a
# cosine of at least this (float32 kernels differ in summation order, nothing more).
MIN_PARITY_COSINE = 0.9999
# 17 is supported by every onnxruntime release of the last years, CPU and CUDA.
OPSET = 17


class ParityError(RuntimeError):
    """PyTorch and ONNX Runtime disagree on the parity photos."""


@dataclass(frozen=True)
class ParityReport:
    num_photos: int
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float

    def __str__(self) -> str:
        return (
            f"parity on {self.num_photos} photos: max |torch - onnx| = {self.max_abs_diff:.3e}, "
            f"cosine min = {self.min_cosine:.7f}, mean = {self.mean_cosine:.7f}"
        )


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    contract_path: Path
    spec: PreprocessSpec
    parity: ParityReport


def export_embedder(
    net: nn.Module,
    spec: PreprocessSpec,
    out_dir: Path,
    parity_photos: Sequence[bytes],
    *,
    basename: str = "embedder",
    min_cosine: float = MIN_PARITY_COSINE,
) -> ExportResult:
    """Write ``out_dir/<basename>.onnx`` (contract in metadata) and ``<basename>.json``.

    ``parity_photos`` are encoded image files (see ``model.exporter.parity_photos``).

    ``net`` must have ``embed(x (N, 3, H, W) float [0, 1]) -> (N, D)``. The batch axis is
    dynamic. The graph is written to a temporary file beside the destination and checked there;
    only when the minimum cosine between PyTorch and ONNX Runtime embeddings of
    ``parity_photos`` reaches ``min_cosine`` are both files renamed into place. Otherwise the
    temporary files are removed, whatever was at the destination before is left as it was, and
    :class:`ParityError` is raised, so ``make`` never finds a failed export standing in as a
    built model.
    """
    if not parity_photos:
        raise ValueError("the parity check needs at least one photo")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{basename}.onnx"
    contract_path = out_dir / f"{basename}.json"
    if not spec.export_date:
        spec = dataclasses.replace(
            spec, export_date=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        )

    wrapper = UInt8InputWrapper(net).eval()
    dummy = torch.zeros((2, 3, spec.height, spec.width), dtype=torch.uint8)
    with torch.no_grad():
        probe = wrapper(dummy)
    if probe.shape != (2, spec.embedding_dim):
        raise ValueError(f"network outputs {tuple(probe.shape)}, spec says D={spec.embedding_dim}")

    # Same directory as the destination, so the final rename is atomic (one filesystem);
    # unique names, so two exports into one directory cannot clobber each other's work.
    tmp_onnx = _temp_path(out_dir, basename, ".onnx")
    tmp_contract = _temp_path(out_dir, basename, ".json")
    try:
        _write_graph(wrapper, dummy, spec, tmp_onnx)
        tmp_contract.write_text(spec.to_json() + "\n")
        parity = check_parity(wrapper, tmp_onnx, parity_photos)
        log.info("%s", parity)
        print(parity, flush=True)
        if parity.min_cosine < min_cosine:
            raise ParityError(f"export refused: {parity}; required cosine >= {min_cosine}")
        publish_model_files(tmp_onnx, tmp_contract, onnx_path, contract_path)
    finally:
        # Both are gone after a successful replace; after any failure (parity, checker,
        # Ctrl-C) nothing half-made stays behind.
        tmp_onnx.unlink(missing_ok=True)
        tmp_contract.unlink(missing_ok=True)
    return ExportResult(onnx_path, contract_path, spec, parity)


def _temp_path(out_dir: Path, basename: str, suffix: str) -> Path:
    # A dot-name ending in .tmp is never mistaken for a model by a glob over *.onnx. Not
    # mkstemp: its 0600 mode would survive the rename and hide the model from a service (or
    # container) running as another user; these files get the usual umask-derived mode.
    return out_dir / f".{basename}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}.tmp"


def _write_graph(wrapper: nn.Module, dummy: torch.Tensor, spec: PreprocessSpec, path: Path) -> None:
    """Trace ``wrapper`` to ``path`` and put the contract into the file's metadata."""
    with torch.no_grad():
        # The TorchScript-based exporter: it needs no extra package and handles these CNNs.
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(path),
            input_names=[spec.input_name],
            output_names=[spec.output_name],
            dynamic_axes={spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    model_proto = onnx.load(str(path))
    onnx.checker.check_model(model_proto)
    del model_proto.metadata_props[:]
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, json.dumps(spec.to_dict(), sort_keys=True)
    model_proto.producer_name = "centroid-retrieval"
    onnx.save(model_proto, str(path))


def publish_model_files(
    tmp_onnx: Path, tmp_contract: Path, onnx_path: Path, contract_path: Path
) -> None:
    """Move a checked model and its contract into place, durably: both fsynced, the contract
    renamed first and the .onnx last (it is what make and the service look for, so once it is
    in place its readable copy already is too), then the directory fsynced."""
    _fsync(tmp_onnx)
    _fsync(tmp_contract)
    os.replace(tmp_contract, contract_path)
    os.replace(tmp_onnx, onnx_path)
    # Makes the renames durable; best effort, since not every platform can open a directory.
    with contextlib.suppress(OSError):
        fsync_dir(onnx_path.parent)


def _fsync(path: Path) -> None:
    # Without it, a crash right after the rename can leave a complete name with empty content.
    with path.open("rb") as f:
        os.fsync(f.fileno())


def check_parity(wrapper: nn.Module, onnx_path: Path, photos: Sequence[bytes]) -> ParityReport:
    """Embed ``photos`` with PyTorch and ONNX Runtime through the same pixel path; compare.

    The pixels are the service's: ``preprocess_bytes`` with the contract read back from the
    written file, so a JPEG draft it sets is what both sides see. The ONNX side runs the photos
    as one batch and again one by one, so the dynamic batch axis is exercised too; the report
    takes the worse of the two.
    """
    embedder = OnnxEmbedder(onnx_path, allow_gpu=False)
    batch = stack_batch([preprocess_bytes(photo, embedder.spec) for photo in photos])
    with torch.no_grad():
        ref = wrapper.eval()(torch.from_numpy(batch)).numpy().astype(np.float64)
    got_batched = embedder.embed(batch).astype(np.float64)
    got_single = np.concatenate([embedder.embed(batch[i : i + 1]) for i in range(len(batch))])
    diffs, cosines = [], []
    for got in (got_batched, got_single.astype(np.float64)):
        diffs.append(float(np.max(np.abs(ref - got))))
        num = np.sum(ref * got, axis=1)
        den = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
        cosines.append(num / np.maximum(den, 1e-12))
    all_cos = np.concatenate(cosines)
    return ParityReport(
        num_photos=len(photos),
        max_abs_diff=max(diffs),
        min_cosine=float(all_cos.min()),
        mean_cosine=float(all_cos.mean()),
    )
