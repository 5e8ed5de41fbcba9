"""A torch network evaluated through ONNX Runtime on the CPU: the network is exported in memory
(the TorchScript-based exporter ``model.export`` uses, same opset, uint8 input) and its
embeddings come from an ORT session, fed by the service's pixel path.

Why: measured by ``python -m bench.evaluation_speed`` (EfficientNet-Lite0 at 224x224 on the
2-core CPU), eager PyTorch embeds about 3.5x slower than ONNX Runtime runs the exported graph
(115 vs 31 CPU-ms per image), and the time is the forward pass itself, not decoding:
``inference_mode``, channels-last memory and batch size each gain little, TorchScript's
``optimize_for_inference`` (BN folded, MKL-DNN layout) still leaves it 1.5-3x behind. ORT
fuses batch-norm and ReLU6 into the convolutions and runs the depthwise ones in its blocked
layout. Exporting and opening the session costs 2.4-3.4 s of CPU for Lite0 (measured alone),
about a fifth of 440 images' embedding; the bench measured the whole evaluation path at 1.09x
the ONNX file's time on the Market-layout sample. On CUDA the network runs in torch as
before.

The pixels are the same either way: ``preprocess_bytes`` with a contract without a JPEG draft
decodes and resizes exactly as ``ImageDataset`` with ``eval_transform`` (times 255), so both
paths score the same up to float32 kernel differences (tested).
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from torch import nn

from artifact.preprocess_spec import PreprocessSpec
from model.evaluation.embed_split import (
    MaskedEmbedFn,
    array_masked_embedder,
    torch_masked_embedder,
)
from model.exporter.onnx_exporter import OPSET
from model.exporter.uint8_input_wrapper import UInt8InputWrapper

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
# Images per ORT call: the service's default batch (OnnxEmbedder.max_batch).
ORT_BATCH = 64


def export_session(net: nn.Module, input_size: tuple[int, int]) -> ort.InferenceSession:
    """An ORT CPU session of ``net.embed`` with uint8 ``(N, 3, H, W)`` input (N dynamic).

    ``net`` must be on the CPU; it is exported in eval mode and put back in the mode it was in.
    """
    wrapper = UInt8InputWrapper(net)
    height, width = input_size
    dummy = torch.zeros((2, 3, height, width), dtype=torch.uint8)
    was_training = net.training
    net.eval()
    buffer = io.BytesIO()
    try:
        # The tracer warns about every shape-dependent Python branch (timm's "same" padding);
        # the batch axis is the only dynamic one, which such branches do not read.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (dummy,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        net.train(was_training)
    options = ort.SessionOptions()
    # OnnxEmbedder's defaults (as onnx_masked_embedder runs the exported file): all graph
    # optimisations, ORT's own thread count and spinning.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        buffer.getvalue(), sess_options=options, providers=["CPUExecutionProvider"]
    )


def exported_masked_embedder(
    net: nn.Module, input_size: tuple[int, int], *, batch_size: int = ORT_BATCH
) -> MaskedEmbedFn:
    """``net.embed`` through an in-memory ONNX export (see the module docstring), with the mask
    of the images that could be read. The export happens here, once."""
    session = export_session(net, input_size)
    spec = PreprocessSpec(
        input_size=(int(input_size[0]), int(input_size[1])),
        embedding_dim=int(net.embedding_dim),
        model_name="evaluated-network",
        model_version="0",
    )

    def embed_batch(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        out = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
        return np.asarray(out, dtype=np.float32)

    return array_masked_embedder(embed_batch, spec, batch_size=batch_size)


def network_masked_embedder(
    net: nn.Module,
    input_size: tuple[int, int],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    num_workers: int = 0,
) -> MaskedEmbedFn:
    """The fastest embedder of ``net`` on ``device``: ONNX Runtime on the CPU (falling back to
    torch, with a warning, when the network does not export), torch on CUDA."""
    if torch.device(device).type == "cpu":
        try:
            return exported_masked_embedder(net, input_size)
        except Exception as exc:  # the exporter raises many types; torch still works
            log.warning("evaluating in torch: the network did not export to ONNX (%s)", exc)
    return torch_masked_embedder(
        net, input_size, device=device, batch_size=batch_size, num_workers=num_workers
    )
