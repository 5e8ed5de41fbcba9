"""Run an exported embedder with ONNX Runtime (torch-free).

The model file must carry a :class:`~artifact.preprocess_spec.PreprocessSpec` in its
``metadata_props``; a file without one is refused with a clear message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from artifact.image_decode import to_input_array
from artifact.preprocess_spec import ContractError, PreprocessSpec

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(available: Sequence[str], *, allow_gpu: bool = True) -> list[str]:
    """Providers to request: CUDA first when onnxruntime-gpu offers it, CPU always as fallback."""
    if allow_gpu and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


class OnnxEmbedder:
    """An ONNX embedding model plus the contract that says how to feed it.

    ``embed(batch)`` takes ``(N, 3, H, W)`` ``uint8`` RGB and returns ``(N, D)`` ``float32``
    exactly as the graph outputs them (L2-normalised only if ``spec.output_normalized``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        allow_gpu: bool = True,
        intra_op_threads: int = 0,
        max_batch: int = 64,
        available_providers: Sequence[str] | None = None,
        allow_spinning: bool = True,
    ) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        options = ort.SessionOptions()
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        if not allow_spinning:
            # ORT's intra-op threads otherwise busy-wait for the next call's work; when other
            # threads (image decoding) need the same cores between calls, they take it from them.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = (
            list(available_providers)
            if available_providers is not None
            else ort.get_available_providers()
        )
        requested = choose_providers(available, allow_gpu=allow_gpu)
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=requested
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ContractError(f"{self.path} is not a loadable ONNX model: {exc}") from exc
        # What ORT actually runs on: CUDA may be *available* but fail to initialise (no device,
        # driver mismatch), in which case the session silently falls back to the CPU.
        self.active_providers: list[str] = list(self._session.get_providers())
        self.device = "cuda" if self.active_providers[0] == CUDA else "cpu"
        if CUDA in requested and self.device != "cuda":
            log.warning("CUDA provider was available but is not active; running on the CPU")
        metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self.spec = PreprocessSpec.from_metadata(metadata, source=str(self.path))
        self._check_graph_matches_spec()
        self.max_batch = max_batch

    def _check_graph_matches_spec(self) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        spec = self.spec
        if spec.input_name not in inputs:
            raise ContractError(
                f"contract names input {spec.input_name!r}, graph has {sorted(inputs)}"
            )
        if spec.output_name not in outputs:
            raise ContractError(
                f"contract names output {spec.output_name!r}, graph has {sorted(outputs)}"
            )
        in_type = inputs[spec.input_name].type
        if in_type != "tensor(uint8)":
            raise ContractError(f"graph input is {in_type}, the contract says uint8")
        shape = inputs[spec.input_name].shape
        if len(shape) != 4 or list(shape[1:]) != [3, spec.height, spec.width]:
            raise ContractError(
                f"graph input shape {shape} does not match contract (N, 3, {spec.height}, "
                f"{spec.width})"
            )
        out_shape = outputs[spec.output_name].shape
        if len(out_shape) != 2 or out_shape[1] != spec.embedding_dim:
            raise ContractError(
                f"graph output shape {out_shape} does not match embedding_dim {spec.embedding_dim}"
            )

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    def embed(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``(N, 3, H, W)`` uint8 → ``(N, D)`` float32, in chunks of at most ``max_batch``."""
        if batch.dtype != np.uint8 or batch.ndim != 4:
            raise ValueError(f"expected (N, 3, H, W) uint8, got {batch.shape} {batch.dtype}")
        if batch.shape[1:] != (3, self.spec.height, self.spec.width):
            raise ValueError(f"batch shape {batch.shape} does not match the contract")
        outs = []
        for start in range(0, batch.shape[0], self.max_batch):
            chunk = np.ascontiguousarray(batch[start : start + self.max_batch])
            (out,) = self._session.run([self.spec.output_name], {self.spec.input_name: chunk})
            outs.append(np.asarray(out, dtype=np.float32))
        if not outs:
            return np.zeros((0, self.spec.embedding_dim), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def embed_images(self, images: Sequence[Image.Image]) -> npt.NDArray[np.float32]:
        """Decoded RGB images → ``(N, D)`` float32 (resized and laid out per the contract)."""
        if not images:
            return np.zeros((0, self.spec.embedding_dim), dtype=np.float32)
        return self.embed(np.stack([to_input_array(img, self.spec) for img in images]))
