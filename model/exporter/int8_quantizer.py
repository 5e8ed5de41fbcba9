"""Static INT8 quantisation (QDQ) of an exported FP32 embedder, calibrated on real photos.

ONNX Runtime's ``quantize_static`` puts QuantizeLinear/DequantizeLinear pairs around every
quantisable op, with activation ranges measured on the calibration photos (MinMax over all of
them: averaging per-batch ranges instead clipped unusual photos, a dark astronomy frame to a
cosine of 0.96 on the test net, for no gain on the default model) and int8 weights per output
channel. Two things it would get wrong on our exports are kept in float32:

- **Shape arithmetic.** timm's TF-"same" convolutions (EfficientNet-Lite) compute their padding
  at run time from the input's shape, in float (Shape → Cast → Div → Ceil → …). Quantising those
  scalars rounds a pad of 1 to 0 and shifts every feature map: the default model's cosine to
  FP32 fell to 0.93. Nodes computed from shapes and constants only are never quantised.
- **The first layers, when they must be.** Error compounds from the input on; on EfficientNet-
  Lite0 the early high-resolution layers cost most of it (parity photos' mean cosine 0.991 with
  everything quantised, 0.996 with the first 3 of 49 convolutions in float32, 0.997 with 8,
  which is where its search stops on views of the shipped photos). :func:`quantize_with_search`
  keeps the fewest leading compute layers in float32 (0, 1, 2, 4, … up to half of them) for
  which the calibration photos' embeddings meet the gate's cosine bars, so a model that
  quantises well keeps all its layers in int8.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from artifact.onnx_embedder import CPU, OnnxEmbedder
from model.exporter.calibration_reader import CalibrationBatches
from model.exporter.embedding_agreement import Agreement, agreement

log = logging.getLogger(__name__)

# The layers whose count the float32 prefix is measured in: the ops that hold the weights.
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Activations fused into the compute op before them; kept with it, or the activation would be
# quantised on its own with the wider pre-activation range.
FUSED_ACTIVATIONS = ("Clip", "Relu")
# uint8 activations with int8 weights: ONNX Runtime's CPU fast path. With int8 activations the
# default model ran 1.1x FP32's speed instead of 1.6x (core time, AVX-512 VNNI, 2026-12-02).
ACTIVATION_TYPE = QuantType.QUInt8
WEIGHT_TYPE = QuantType.QInt8
# Weights in 7 bits: on x86 CPUs without VNNI (AVX2 only), ONNX Runtime's uint8 x int8 kernels
# add pairs of products in int16 (vpmaddubsw), which saturates with full 8-bit weights. On such
# a machine (AMD EPYC, AVX2) the default gate's min cosine fell to 0.9725 (< 0.98) with 8-bit
# weights. An exported model is served on machines it was not made on, so it is always
# quantised this way.
REDUCE_RANGE = True


class QuantizationError(RuntimeError):
    """No INT8 model within the allowed float32 prefix agrees with FP32 on calibration photos."""


@dataclass(frozen=True)
class QuantizedModel:
    """``path``: the chosen INT8 model; ``fp32_layers`` of its ``compute_layers`` leading
    compute layers run in float32; ``calibration``: its agreement with FP32 on the calibration
    photos; ``attempts``: every prefix tried, with that agreement, in order."""

    path: Path
    fp32_layers: int
    compute_layers: int
    calibration: Agreement
    attempts: tuple[tuple[int, Agreement], ...]


def named_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose every node has a unique name (exclusions are by name)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    taken = {n.name for n in out.graph.node if n.name}
    for i, node in enumerate(out.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return out


def shape_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes computing from shapes and constants only (``Shape`` included).

    Nodes are in topological order (ONNX requires it), so one pass sees every input's origin.
    """
    constant = {init.name for init in graph.initializer}
    from_shape: set[str] = set()
    out: list[str] = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant":
            constant.update(node.output)
        elif node.op_type == "Shape" or (
            any(name in from_shape for name in inputs)
            and all(name in from_shape or name in constant for name in inputs)
        ):
            from_shape.update(node.output)
            out.append(node.name)
    return out


def compute_layer_count(graph: onnx.GraphProto) -> int:
    return sum(node.op_type in COMPUTE_OPS for node in graph.node)


def float_prefix(graph: onnx.GraphProto, layers: int) -> list[str]:
    """Names of the nodes up to and including the ``layers``-th compute node (and the
    activation right after it), in graph order; ``[]`` for 0."""
    if layers <= 0:
        return []
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out: list[str] = []
    seen = 0
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        out.append(node.name)
        if node.op_type in COMPUTE_OPS:
            seen += 1
            if seen == layers:
                out += [
                    c.name
                    for name in node.output
                    for c in consumers.get(name, [])
                    if c.op_type in FUSED_ACTIVATIONS
                ]
                break
    return out


def quantize_int8(
    fp32_path: Path, out_path: Path, calibration: CalibrationBatches, *, fp32_layers: int = 0
) -> None:
    """Write the QDQ INT8 model of ``fp32_path`` to ``out_path`` (metadata kept), its first
    ``fp32_layers`` compute layers and its shape arithmetic in float32."""
    model = named_nodes(onnx.load(str(fp32_path)))
    excluded = shape_nodes(model.graph)
    shape_only = set(excluded)
    excluded += [n for n in float_prefix(model.graph, fp32_layers) if n not in shape_only]
    calibration.rewind()
    quantize_static(
        model,
        str(out_path),
        calibration,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=ACTIVATION_TYPE,
        weight_type=WEIGHT_TYPE,
        reduce_range=REDUCE_RANGE,
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=[CPU],
    )
    # The quantiser leaves behind the constants of the activations it folded into QDQ ranges;
    # ONNX Runtime would warn about each one every time the model is loaded.
    quantized = onnx.load(str(out_path))
    drop_unused_constants(quantized.graph)
    onnx.save(quantized, str(out_path))


def drop_unused_constants(graph: onnx.GraphProto) -> None:
    """Remove the initializers and ``Constant`` nodes that nothing reads, in place (a name read
    by the graph's outputs or inside a subgraph counts as read)."""
    used = _names_read(graph)
    kept_nodes = [
        n for n in graph.node if n.op_type != "Constant" or any(o in used for o in n.output)
    ]
    kept_inits = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)


def prefix_candidates(compute_layers: int) -> list[int]:
    """0, 1, 2, 4, … and finally half the compute layers (rounded down), ascending."""
    cap = compute_layers // 2
    out, k = [0], 1
    while k < cap:
        out.append(k)
        k *= 2
    if cap > 0:
        out.append(cap)
    return out


def embed_all(model_path: Path, photos: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """``(N, D)`` float32 embeddings of ``(N, 3, H, W)`` uint8 ``photos`` on the CPU."""
    return OnnxEmbedder(model_path, allow_gpu=False).embed(photos)


def quantize_with_search(
    fp32_path: Path,
    photos: npt.NDArray[np.uint8],
    work_dir: Path,
    *,
    min_mean_cosine: float,
    min_cosine: float,
    fp32_layers: int | None = None,
) -> QuantizedModel:
    """Quantise ``fp32_path`` on ``photos`` ``(N, 3, H, W)`` uint8 into ``work_dir``.

    With ``fp32_layers`` given, that one prefix is used, whatever its agreement (the gate
    judges it). Otherwise the prefixes of :func:`prefix_candidates` are tried in order and the
    first whose calibration-photo embeddings reach both cosine bars is returned; none does →
    :class:`QuantizationError` naming what each attempt reached.
    """
    model = onnx.load(str(fp32_path))
    compute_layers = compute_layer_count(model.graph)
    input_name = model.graph.input[0].name
    del model
    calibration = CalibrationBatches(input_name, photos)
    reference = embed_all(fp32_path, photos)
    candidates: Sequence[int] = (
        prefix_candidates(compute_layers) if fp32_layers is None else [fp32_layers]
    )
    attempts: list[tuple[int, Agreement]] = []
    for layers in candidates:
        path = work_dir / f"int8-fp32-prefix-{layers}.onnx"
        quantize_int8(fp32_path, path, calibration, fp32_layers=layers)
        reached = agreement(reference, embed_all(path, photos))
        attempts.append((layers, reached))
        log.info("INT8 with %d/%d leading layers in float32: %s", layers, compute_layers, reached)
        accepted = reached.mean_cosine >= min_mean_cosine and reached.min_cosine >= min_cosine
        if accepted or fp32_layers is not None:
            return QuantizedModel(path, layers, compute_layers, reached, tuple(attempts))
    tried = "; ".join(f"{k} float32 layers: {a}" for k, a in attempts)
    raise QuantizationError(
        f"no INT8 model with at most {candidates[-1]} of {compute_layers} layers in float32 "
        f"agrees with FP32 on the {photos.shape[0]} calibration photos (mean cosine >= "
        f"{min_mean_cosine}, min >= {min_cosine}): {tried}"
    )


def _names_read(graph: onnx.GraphProto) -> set[str]:
    names = {output.name for output in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                names |= _names_read(sub)
    return names
